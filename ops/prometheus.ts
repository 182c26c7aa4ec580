/**
 * Prometheus's text exposition format (version 0.0.4): metric families with `# HELP` and `# TYPE`,
 * label values escaped, histograms as cumulative `_bucket{le}` series with `_sum` and `_count`.
 * Only writes text; who serves it (the admin listener's `/metrics`, `keeldns metrics`) is elsewhere.
 *
 * @module
 */

/** Label names and values of one sample. */
export type Labels = Readonly<Record<string, string>>;

/** The content type of what {@link PrometheusText} writes. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value with backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A sample value as Prometheus writes it (`+Inf`, `NaN`, integers without a fraction). */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (!LABEL.test(k) || k.startsWith("__")) {
      throw new Error(`bad Prometheus label name ${JSON.stringify(k)}`);
    }
    parts.push(`${k}="${escapeLabelValue(v)}"`);
  }
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** One histogram's data: counts per bucket (not cumulative; the last is above every bound), sum. */
export interface HistogramData {
  /** Upper bounds, ascending (without +Inf). */
  readonly bounds: readonly number[];
  /** `bounds.length + 1` counts: observations in each bucket, the last one above the last bound. */
  readonly counts: ArrayLike<number>;
  readonly sum: number;
}

/** Writes metric families one after the other; {@link text} is the exposition. */
export class PrometheusText {
  private readonly lines: string[] = [];
  private readonly seen = new Set<string>();

  /** Starts a family: its name, type and help line. Each name once. */
  family(name: string, type: "counter" | "gauge" | "histogram" | "untyped", help: string): this {
    if (!NAME.test(name)) throw new Error(`bad Prometheus metric name ${JSON.stringify(name)}`);
    if (type === "counter" && !name.endsWith("_total")) throw new Error(`counter ${name} must end in _total`);
    if (this.seen.has(name)) throw new Error(`metric ${name} written twice`);
    this.seen.add(name);
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    this.lines.push(`# TYPE ${name} ${type}`);
    return this;
  }

  /** A sample of the family just started (`name` may carry a suffix such as `_bucket`). */
  sample(name: string, value: number, labels?: Labels): this {
    this.lines.push(`${name}${labelText(labels)} ${formatValue(value)}`);
    return this;
  }

  /** A histogram's `_bucket`, `_sum` and `_count` samples, for one set of labels. */
  histogram(name: string, data: HistogramData, labels?: Labels): this {
    let cumulative = 0;
    for (let b = 0; b < data.bounds.length; b++) {
      cumulative += data.counts[b];
      this.lines.push(
        `${name}_bucket${labelText(labels, ["le", formatValue(data.bounds[b])])} ${cumulative}`,
      );
    }
    cumulative += data.counts[data.bounds.length];
    this.lines.push(`${name}_bucket${labelText(labels, ["le", "+Inf"])} ${cumulative}`);
    this.lines.push(`${name}_sum${labelText(labels)} ${formatValue(data.sum)}`);
    this.lines.push(`${name}_count${labelText(labels)} ${cumulative}`);
    return this;
  }

  /** The exposition text (ends with a line feed). */
  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

/**
 * A name in wire form (labels with their length bytes, no compression) as presentation text,
 * for logs and lists: `.` and `\` escaped, bytes outside printable ASCII as `\DDD`, "." for the
 * root. Reads `bytes[start, end)` and stops quietly where the labels stop making sense.
 *
 * @module
 */

/** The name in wire form at `bytes[start, end)` as text. */
export function nameText(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let pos = start;
  let text = "";
  while (pos < end) {
    const length = bytes[pos];
    if (length === 0 || pos + 1 + length > end) break;
    if (pos > start) text += ".";
    for (let j = pos + 1; j <= pos + length; j++) {
      const c = bytes[j];
      text += c === 0x2e || c === 0x5c
        ? `\\${String.fromCharCode(c)}`
        : c > 0x20 && c < 0x7f
        ? String.fromCharCode(c)
        : `\\${c.toString().padStart(3, "0")}`;
    }
    pos += 1 + length;
  }
  return text || ".";
}

/**
 * `deno task package`: a .deb and an .ipk per target into dist/.
 *
 * Two kinds of build go into a package:
 * - **compiled**: `dist/keeldns-<triple>` from `deno task compile` (needs a `denort` download, so a
 *   machine with internet, or DENORT_BIN); `/usr/bin/keeldns` is that executable.
 * - **runtime**: `deno bundle` output plus the Deno runtime from npm (`@deno/linux-x64-glibc`,
 *   `@deno/linux-arm64-glibc`), in `/usr/lib/keeldns/`, behind a small launcher at `/usr/bin/keeldns`.
 *   Everything it needs is reachable offline, so this is what the tests build and install.
 *
 * `--kind auto` (default) takes the compiled executable when it exists, else the runtime build.
 *
 * Usage: deno task package [--target x86_64|aarch64 ...] [--kind auto|compiled|runtime]
 *
 * @module
 */
import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };

const ROOT = new URL("../", import.meta.url).pathname;
const DIST = `${ROOT}dist`;
const HERE = `${ROOT}packaging`;
/** The Deno release the runtime build ships: the one this project pins. */
const DENO_VERSION = "2.9.6";
const VERSION = denoJson.version;
/** 2026-11-24T00:00:00Z: fixed timestamps make the archives reproducible. */
const SOURCE_DATE_EPOCH = Number(Deno.env.get("SOURCE_DATE_EPOCH") ?? 1795478400);

/** One target and its names in each packaging world. */
interface Target {
  readonly name: "x86_64" | "aarch64";
  readonly triple: string;
  readonly debArch: string;
  readonly ipkArchs: readonly string[];
  readonly npmRuntime: string;
}

/** The targets Deno ships for (glibc only). */
export const TARGETS: readonly Target[] = [
  {
    name: "x86_64",
    triple: "x86_64-unknown-linux-gnu",
    debArch: "amd64",
    ipkArchs: ["x86_64"],
    npmRuntime: "@deno/linux-x64-glibc",
  },
  {
    name: "aarch64",
    triple: "aarch64-unknown-linux-gnu",
    debArch: "arm64",
    ipkArchs: ["aarch64_generic", "aarch64_cortex-a53"],
    npmRuntime: "@deno/linux-arm64-glibc",
  },
];

/** Runs a command; throws with its stderr on failure. */
async function run(command: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(command, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder();
  if (!out.success) throw new Error(`${command} ${args.join(" ")} failed:\n${text.decode(out.stderr)}`);
  return text.decode(out.stdout);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Copies `from` to `to` with `mode`, creating parent directories. */
async function place(from: string, to: string, mode: number): Promise<void> {
  await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(from, to);
  await Deno.chmod(to, mode);
}

/** Writes `text` to `to` with `mode`, creating parent directories. */
async function write(to: string, text: string | Uint8Array, mode: number): Promise<void> {
  await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
  if (typeof text === "string") await Deno.writeTextFile(to, text);
  else await Deno.writeFile(to, text);
  await Deno.chmod(to, mode);
}

/** The bundle of the whole program (built once). */
async function bundle(): Promise<string> {
  const out = `${DIST}/keeldns.js`;
  await run(Deno.execPath(), ["bundle", "--platform", "deno", "--quiet", "-o", out, `${ROOT}main.ts`], ROOT);
  return out;
}

/** The Deno runtime binary for `target`: this one if it fits, else from the npm registry (cached). */
async function runtimeFor(target: Target): Promise<string> {
  if (Deno.build.arch === target.name && Deno.version.deno === DENO_VERSION) return Deno.execPath();
  const cache = `${DIST}/cache/${target.npmRuntime.replace("/", "_")}-${DENO_VERSION}`;
  const binary = `${cache}/package/deno`;
  if (await exists(binary)) return binary;
  await Deno.mkdir(cache, { recursive: true });
  const tarball = (await run("npm", ["pack", `${target.npmRuntime}@${DENO_VERSION}`, "--silent"], cache))
    .trim()
    .split("\n").at(-1)!;
  await run("tar", ["-xzf", tarball, "package/deno"], cache);
  return binary;
}

/** What goes into `/usr` for one target, and how it was built. */
interface Payload {
  readonly kind: "compiled" | "runtime";
  /** Lays the program's files out under `root` (a staging directory). */
  install(root: string): Promise<void>;
}

async function payloadFor(target: Target, kind: string, bundled: () => Promise<string>): Promise<Payload> {
  const compiled = `${DIST}/keeldns-${target.triple}`;
  if (kind === "compiled" || (kind === "auto" && await exists(compiled))) {
    if (!await exists(compiled)) throw new Error(`${compiled} is missing: run deno task compile first`);
    return { kind: "compiled", install: (root) => place(compiled, `${root}/usr/bin/keeldns`, 0o755) };
  }
  const runtime = await runtimeFor(target);
  const js = await bundled();
  const launcher = (await Deno.readTextFile(`${HERE}/common/launcher.sh`)).replaceAll(
    "@LIBDIR@",
    "/usr/lib/keeldns",
  );
  return {
    kind: "runtime",
    install: async (root) => {
      await place(runtime, `${root}/usr/lib/keeldns/deno`, 0o755);
      await place(js, `${root}/usr/lib/keeldns/keeldns.js`, 0o644);
      await write(`${root}/usr/bin/keeldns`, launcher, 0o755);
    },
  };
}

/** Total size in KiB of the files under `dir`. */
async function installedSize(dir: string): Promise<number> {
  let bytes = 0;
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`);
      else bytes += (await Deno.lstat(`${d}/${e.name}`)).size;
    }
  };
  await walk(dir);
  return Math.ceil(bytes / 1024);
}

const DESCRIPTION = `SmartDNS-class DNS forwarder with a self-healing guardian
 keeldns forwards DNS over UDP and TCP to several upstream servers at once and
 answers with the fastest, keeps a cache that survives restarts, and reads an
 existing smartdns.conf as-is. A guardian process replaces the serving child
 within milliseconds when it crashes, hangs or outgrows its memory limit, and
 restarts it on request without dropping a query.`;

/** Files both package formats share, under `root`. */
async function installCommon(root: string, payload: Payload): Promise<void> {
  await payload.install(root);
  await place(`${HERE}/common/keeldns.toml`, `${root}/etc/keeldns/keeldns.toml`, 0o644);
}

/** Builds the .deb for `target`; returns its path. */
async function buildDeb(target: Target, payload: Payload): Promise<string> {
  const stage = await Deno.makeTempDir({ prefix: "keeldns-deb-" });
  try {
    await Deno.chmod(stage, 0o755);
    await installCommon(stage, payload);
    await place(`${HERE}/systemd/keeldns.service`, `${stage}/lib/systemd/system/keeldns.service`, 0o644);
    const doc = `${stage}/usr/share/doc/keeldns`;
    await place(`${HERE}/common/copyright`, `${doc}/copyright`, 0o644);
    await place(`${HERE}/common/crontab.example`, `${doc}/examples/crontab.example`, 0o644);
    await place(`${ROOT}README.md`, `${doc}/README.md`, 0o644);
    const date = new Date(SOURCE_DATE_EPOCH * 1000).toUTCString().replace("GMT", "+0000");
    const changelog = `keeldns (${VERSION}) unstable; urgency=medium\n\n  * Release ${VERSION}.\n\n` +
      ` -- keeldns developers <developers@keeldns.invalid>  ${date}\n`;
    await write(`${doc}/changelog`, changelog, 0o644);
    await run("gzip", ["-9n", `${doc}/changelog`]);
    // The runtime is shipped as Deno builds it: lcms2 linked in, no RELRO. Nothing to fix here.
    const binary = payload.kind === "runtime" ? "usr/lib/keeldns/deno" : "usr/bin/keeldns";
    await write(
      `${stage}/usr/share/lintian/overrides/keeldns`,
      `# The Deno runtime, as Deno builds and ships it, links lcms2 statically and has no RELRO.\n` +
        `keeldns: embedded-library lcms2 [${binary}]\nkeeldns: hardening-no-relro [${binary}]\n` +
        (payload.kind === "compiled"
          ? `# deno compile appends the program to the runtime: stripping would cut it off.\n` +
            `keeldns: unstripped-binary-or-object [${binary}]\n`
          : ""),
      0o644,
    );
    await place(`${HERE}/common/keeldns.8`, `${stage}/usr/share/man/man8/keeldns.8`, 0o644);
    await run("gzip", ["-9n", `${stage}/usr/share/man/man8/keeldns.8`]);

    const size = await installedSize(stage);
    const control = [
      "Package: keeldns",
      `Version: ${VERSION}`,
      `Architecture: ${target.debArch}`,
      "Maintainer: keeldns developers <developers@keeldns.invalid>",
      `Installed-Size: ${size}`,
      "Depends: libc6 (>= 2.27), init-system-helpers (>= 1.54~)",
      "Section: net",
      "Priority: optional",
      `Description: ${DESCRIPTION}`,
      "",
    ].join("\n");
    await write(`${stage}/DEBIAN/control`, control, 0o644);
    await write(`${stage}/DEBIAN/conffiles`, "/etc/keeldns/keeldns.toml\n", 0o644);
    for (const script of ["postinst", "prerm", "postrm"]) {
      await place(`${HERE}/deb/${script}`, `${stage}/DEBIAN/${script}`, 0o755);
    }
    const sums = await run("sh", [
      "-c",
      "find . -path ./DEBIAN -prune -o -type f -print0 | sort -z | xargs -0 md5sum",
    ], stage);
    await write(`${stage}/DEBIAN/md5sums`, sums.replaceAll("  ./", "  "), 0o644);
    await touchAll(stage);
    const out = `${DIST}/keeldns_${VERSION}_${target.debArch}.deb`;
    await run("dpkg-deb", ["--build", "--root-owner-group", "-Zxz", "-z3", stage, out]);
    return out;
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

/** Sets every file's mtime to SOURCE_DATE_EPOCH, for reproducible archives. */
async function touchAll(dir: string): Promise<void> {
  await run("find", [dir, "-exec", "touch", "-h", "-d", `@${SOURCE_DATE_EPOCH}`, "{}", "+"]);
}

/** A gzip'd tar of `dir`'s contents, owned by root, in name order (OpenWrt's ipkg-build form). */
async function tarGz(dir: string, out: string, entries = ["."]): Promise<void> {
  await touchAll(dir);
  await run("tar", [
    "--sort=name",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    `--mtime=@${SOURCE_DATE_EPOCH}`,
    "-czf",
    out,
    "-C",
    dir,
    ...entries,
  ]);
}

/** Builds one .ipk per OpenWrt arch name of `target`; returns their paths. */
async function buildIpks(target: Target, payload: Payload): Promise<string[]> {
  const stage = await Deno.makeTempDir({ prefix: "keeldns-ipk-" });
  const outs: string[] = [];
  try {
    const data = `${stage}/data`;
    await Deno.mkdir(data, { mode: 0o755 });
    await Deno.chmod(data, 0o755);
    await installCommon(data, payload);
    await place(`${HERE}/openwrt/keeldns.init`, `${data}/etc/init.d/keeldns`, 0o755);
    await place(`${HERE}/common/crontab.example`, `${data}/usr/share/keeldns/crontab.example`, 0o644);
    const size = (await installedSize(data)) * 1024;
    const outer = `${stage}/outer`;
    await Deno.mkdir(outer);
    await Deno.chmod(outer, 0o755);
    await tarGz(data, `${outer}/data.tar.gz`);
    await write(`${outer}/debian-binary`, "2.0\n", 0o644);
    for (const arch of target.ipkArchs) {
      const control = `${stage}/control-${arch}`;
      await Deno.mkdir(control, { mode: 0o755 });
      await Deno.chmod(control, 0o755);
      await write(
        `${control}/control`,
        [
          "Package: keeldns",
          `Version: ${VERSION}`,
          "Depends: libc",
          "Source: keeldns",
          "SourceName: keeldns",
          "Section: net",
          `Architecture: ${arch}`,
          `Installed-Size: ${size}`,
          `Description: ${
            DESCRIPTION.replaceAll("\n ", "\n  ")
          }\n  Needs glibc (Deno has no musl build): stock OpenWrt needs a glibc runtime beside it.`,
          "",
        ].join("\n"),
        0o644,
      );
      await write(`${control}/conffiles`, "/etc/keeldns/keeldns.toml\n", 0o644);
      await place(`${HERE}/openwrt/postinst`, `${control}/postinst`, 0o755);
      await place(`${HERE}/openwrt/prerm`, `${control}/prerm`, 0o755);
      await tarGz(control, `${outer}/control.tar.gz`);
      const out = `${DIST}/keeldns_${VERSION}_${arch}.ipk`;
      await tarGz(outer, out, ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]);
      outs.push(out);
    }
    return outs;
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      target: { type: "string", multiple: true },
      kind: { type: "string", default: "auto" },
    },
  });
  if (!["auto", "compiled", "runtime"].includes(values.kind)) {
    console.error(`package: --kind must be auto, compiled or runtime, not "${values.kind}"`);
    Deno.exit(64);
  }
  const wanted = values.target ?? TARGETS.map((t) => t.name);
  const targets = TARGETS.filter((t) => wanted.includes(t.name));
  if (targets.length !== wanted.length) {
    console.error(`package: --target must be one of ${TARGETS.map((t) => t.name).join(", ")}`);
    Deno.exit(64);
  }
  await Deno.mkdir(DIST, { recursive: true });
  let bundled: Promise<string> | undefined;
  for (const target of targets) {
    const payload = await payloadFor(target, values.kind, () => bundled ??= bundle());
    const deb = await buildDeb(target, payload);
    const ipks = await buildIpks(target, payload);
    for (const out of [deb, ...ipks]) console.log(`package: ${out} (${payload.kind} build)`);
  }
}

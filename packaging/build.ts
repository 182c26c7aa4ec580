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
 * Deno links glibc, and stock OpenWrt is musl: so the runtime packages (.deb, .ipk, and the
 * "copy onto the router" tarball `keeldns-<version>-<target>.tar.gz`) carry the glibc loader and
 * exactly the libraries the runtime's ELF header names (`DT_NEEDED`), from Debian's installed
 * `libc6`/`libgcc-s1` (x86_64) or `libc6-arm64-cross`/`libgcc-s1-arm64-cross` (aarch64), with
 * those packages' copyright files, in `/usr/lib/keeldns/glibc/`. The launcher always starts the
 * runtime through that loader (`ld-linux-*.so.* --library-path DIR deno …`). A compiled build
 * gets the same wrapper in the .ipk and the tarball; its .deb keeps the executable as
 * `/usr/bin/keeldns` (Debian has glibc).
 *
 * Usage: deno task package [--target x86_64|aarch64 ...] [--kind auto|compiled|runtime]
 *        [--format deb|ipk ...] [--out DIR]
 *
 * @module
 */
import { parseArgs } from "node:util";
import denoJson from "../deno.json" with { type: "json" };
import { elfLinkage } from "./elf.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** Where packages go: dist/, or `--out DIR` (tests build into their own directories). */
let DIST = `${ROOT}dist`;
/** Where the npm runtime downloads are kept between builds, whatever `--out` says. */
const CACHE = `${ROOT}dist/cache`;
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
  /** ELF `e_machine` of the target. */
  readonly machine: number;
  /**
   * Where this target's glibc is installed, in order of preference: the native multiarch
   * directory (libc6, kept current by security updates), then Debian's cross packages.
   */
  readonly glibcDirs: readonly string[];
}

/** The targets Deno ships for (glibc only). */
export const TARGETS: readonly Target[] = [
  {
    name: "x86_64",
    triple: "x86_64-unknown-linux-gnu",
    debArch: "amd64",
    ipkArchs: ["x86_64"],
    npmRuntime: "@deno/linux-x64-glibc",
    machine: 62,
    glibcDirs: ["/lib/x86_64-linux-gnu", "/usr/x86_64-linux-gnu/lib"],
  },
  {
    name: "aarch64",
    triple: "aarch64-unknown-linux-gnu",
    debArch: "arm64",
    ipkArchs: ["aarch64_generic", "aarch64_cortex-a53"],
    npmRuntime: "@deno/linux-arm64-glibc",
    machine: 183,
    glibcDirs: ["/lib/aarch64-linux-gnu", "/usr/aarch64-linux-gnu/lib"],
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
  const cache = `${CACHE}/${target.npmRuntime.replace("/", "_")}-${DENO_VERSION}`;
  const binary = `${cache}/package/deno`;
  if (await exists(binary)) return binary;
  await Deno.mkdir(cache, { recursive: true });
  const tarball = (await run("npm", ["pack", `${target.npmRuntime}@${DENO_VERSION}`, "--silent"], cache))
    .trim()
    .split("\n").at(-1)!;
  await run("tar", ["-xzf", tarball, "package/deno"], cache);
  return binary;
}

/** Where the bundled glibc goes: beside the runtime, one directory for loader and libraries. */
const GLIBC_DIR = "/usr/lib/keeldns/glibc";

/** The glibc loader and libraries one executable needs, as found on this build machine. */
export interface GlibcBundle {
  /** The loader's file name (from `PT_INTERP`), e.g. `ld-linux-aarch64.so.1`. */
  readonly loader: string;
  /** Source path of every file to bundle (the loader too), by file name. */
  readonly files: ReadonlyMap<string, string>;
  /** The Debian packages the files come from: name → copyright file and `SOURCES` line. */
  readonly packages: ReadonlyMap<string, { copyright: string; source: string }>;
}

/**
 * Finds the glibc loader and every library `executable` links (`DT_NEEDED`, transitively) in the
 * first of `target.glibcDirs` that has them all, and the Debian packages that installed them.
 */
export async function glibcFor(target: Target, executable: string): Promise<GlibcBundle> {
  const linkage = elfLinkage(await Deno.readFile(executable));
  if (linkage.machine !== target.machine) throw new Error(`${executable} is not a ${target.name} executable`);
  if (!linkage.interpreter) throw new Error(`${executable} is static: nothing to bundle`);
  const loader = linkage.interpreter.slice(linkage.interpreter.lastIndexOf("/") + 1);
  const tried: string[] = [];
  for (const dir of target.glibcDirs) {
    const files = new Map<string, string>();
    const queue = [loader, ...linkage.needed];
    let complete = true;
    while (queue.length > 0) {
      const name = queue.shift()!;
      if (files.has(name)) continue;
      const path = `${dir}/${name}`;
      if (!await exists(path)) {
        complete = false;
        break;
      }
      files.set(name, path);
      queue.push(...elfLinkage(await Deno.readFile(path)).needed);
    }
    tried.push(dir);
    if (!complete) continue;
    const packages = new Map<string, { copyright: string; source: string }>();
    const owners = new Map<string, string[]>();
    for (const [name, path] of files) {
      // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"
      const owner = (await run("dpkg-query", ["-S", path])).split(":")[0].trim();
      owners.set(owner, [...owners.get(owner) ?? [], name]);
    }
    for (const [pkg, names] of owners) {
      const version = (await run("dpkg-query", [
        "-W",
        "-f",
        "${Version} ${source:Package} ${source:Version}",
        pkg,
      ])).trim().split(" ");
      const copyright = `/usr/share/doc/${pkg}/copyright`;
      if (!await exists(copyright)) throw new Error(`${copyright} is missing: reinstall ${pkg}`);
      packages.set(pkg, {
        copyright,
        source: `${names.sort().join(" ")}: Debian package ${pkg} ${version[0]}, ` +
          `built from Debian source package ${version[1]} ${version[2]}`,
      });
    }
    return { loader, files, packages };
  }
  const debs = target.name === "x86_64" ? "libc6 libgcc-s1" : "libc6-arm64-cross libgcc-s1-arm64-cross";
  throw new Error(
    `no complete ${target.name} glibc (${[loader, ...linkage.needed].join(", ")}) in ${
      tried.join(" or ")
    }: ` +
      `apt-get install ${debs}`,
  );
}

/** Lays the glibc bundle out in `root` + GLIBC_DIR, with the packages' copyright files. */
async function installGlibc(root: string, glibc: GlibcBundle): Promise<void> {
  for (const [name, path] of glibc.files) {
    const mode = name === glibc.loader ? 0o755 : (await Deno.stat(path)).mode! & 0o755;
    await place(path, `${root}${GLIBC_DIR}/${name}`, mode);
  }
  const sources = [...glibc.packages.values()].map((p) => p.source).join("\n");
  for (const [pkg, { copyright }] of glibc.packages) {
    await place(copyright, `${root}${GLIBC_DIR}/copyright.${pkg}`, 0o644);
  }
  await write(
    `${root}${GLIBC_DIR}/SOURCES`,
    `The GNU C Library and libgcc_s, unmodified, as Debian built them:\n${sources}\n`,
    0o644,
  );
}

/** The launcher script for `program` (in /usr/lib/keeldns) run with `args` before the user's. */
async function launcher(glibc: GlibcBundle, program: string, args: string): Promise<string> {
  return (await Deno.readTextFile(`${HERE}/common/launcher.sh`))
    .replaceAll("@LIBDIR@", () => "/usr/lib/keeldns")
    .replaceAll("@LOADER@", () => glibc.loader)
    .replaceAll("@PROGRAM@", () => program)
    .replaceAll(" @ARGS@", () => args ? ` ${args}` : "");
}

/** Where a package goes: a Debian system (glibc), or OpenWrt and other musl systems. */
type Destination = "deb" | "openwrt";

/** What goes into `/usr` for one target, and how it was built. */
interface Payload {
  readonly kind: "compiled" | "runtime";
  /** The glibc loader's name when the .deb carries the bundled glibc (runtime build). */
  readonly debLoader?: string;
  /** Lays the program's files out under `root` (a staging directory) for `destination`. */
  install(root: string, destination: Destination): Promise<void>;
}

/** `deno run` flags of the runtime build's launcher (the same permissions as `deno compile`). */
const RUN_ARGS = "run --quiet --no-prompt --allow-net --allow-read --allow-write --allow-env --allow-sys " +
  '--allow-run --allow-ffi --unstable-net "$LIBDIR/keeldns.js"';

async function payloadFor(target: Target, kind: string, bundled: () => Promise<string>): Promise<Payload> {
  const compiled = `${ROOT}dist/keeldns-${target.triple}`;
  if (kind === "compiled" || (kind === "auto" && await exists(compiled))) {
    if (!await exists(compiled)) throw new Error(`${compiled} is missing: run deno task compile first`);
    const glibc = await glibcFor(target, compiled);
    const wrapper = await launcher(glibc, "keeldns", "");
    return {
      kind: "compiled",
      install: async (root, destination) => {
        if (destination === "deb") return await place(compiled, `${root}/usr/bin/keeldns`, 0o755);
        await place(compiled, `${root}/usr/lib/keeldns/keeldns`, 0o755);
        await installGlibc(root, glibc);
        await write(`${root}/usr/bin/keeldns`, wrapper, 0o755);
      },
    };
  }
  const runtime = await runtimeFor(target);
  const glibc = await glibcFor(target, runtime);
  const js = await bundled();
  const script = await launcher(glibc, "deno", RUN_ARGS);
  return {
    kind: "runtime",
    debLoader: glibc.loader,
    install: async (root) => {
      await place(runtime, `${root}/usr/lib/keeldns/deno`, 0o755);
      await place(js, `${root}/usr/lib/keeldns/keeldns.js`, 0o644);
      await installGlibc(root, glibc);
      await write(`${root}/usr/bin/keeldns`, script, 0o755);
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
async function installCommon(root: string, payload: Payload, destination: Destination): Promise<void> {
  await payload.install(root, destination);
  await place(`${HERE}/common/keeldns.toml`, `${root}/etc/keeldns/keeldns.toml`, 0o644);
}

/** Builds the .deb for `target`; returns its path. */
async function buildDeb(target: Target, payload: Payload): Promise<string> {
  const stage = await Deno.makeTempDir({ prefix: "keeldns-deb-" });
  try {
    await Deno.chmod(stage, 0o755);
    await installCommon(stage, payload, "deb");
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
          : "") +
        (payload.debLoader
          ? `# The bundled glibc (usr/lib/keeldns/glibc) is deliberate: the launcher runs the runtime\n` +
            `# through it everywhere, as on musl systems. The loader is run as a program, so it is\n` +
            `# executable, and needs nothing else (as in Debian's own libc6).\n` +
            `keeldns: embedded-library libm [usr/lib/keeldns/glibc/libm.so.6]\n` +
            `keeldns: shared-library-is-executable 0755 [usr/lib/keeldns/glibc/${payload.debLoader}]\n` +
            `keeldns: shared-library-lacks-prerequisites [usr/lib/keeldns/glibc/${payload.debLoader}]\n`
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

/**
 * Builds one .ipk per OpenWrt arch name of `target`, and the tarball of the same files for copying
 * onto a router by hand (`tar -xzf keeldns-<version>-<target>.tar.gz -C /`); returns their paths.
 */
async function buildIpks(target: Target, payload: Payload): Promise<string[]> {
  const stage = await Deno.makeTempDir({ prefix: "keeldns-ipk-" });
  const outs: string[] = [];
  try {
    const data = `${stage}/data`;
    await Deno.mkdir(data, { mode: 0o755 });
    await Deno.chmod(data, 0o755);
    await installCommon(data, payload, "openwrt");
    await place(`${HERE}/openwrt/keeldns.init`, `${data}/etc/init.d/keeldns`, 0o755);
    await place(`${HERE}/common/crontab.example`, `${data}/usr/share/keeldns/crontab.example`, 0o644);
    await place(`${HERE}/common/copyright`, `${data}/usr/share/keeldns/copyright`, 0o644);
    const size = (await installedSize(data)) * 1024;
    const outer = `${stage}/outer`;
    await Deno.mkdir(outer);
    await Deno.chmod(outer, 0o755);
    await tarGz(data, `${outer}/data.tar.gz`);
    // The tarball is the .ipk's data archive itself: the same files, paths relative to /.
    const tarball = `${DIST}/keeldns-${VERSION}-${target.name}.tar.gz`;
    await Deno.copyFile(`${outer}/data.tar.gz`, tarball);
    outs.push(tarball);
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
          "License: Apache-2.0",
          "Section: net",
          `Architecture: ${arch}`,
          `Installed-Size: ${size}`,
          `Description: ${
            DESCRIPTION.replaceAll("\n ", "\n  ")
          }\n  Carries the glibc loader and libraries its runtime links (Debian's), so it runs on\n  musl systems such as stock OpenWrt.`,
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
      format: { type: "string", multiple: true },
      out: { type: "string" },
    },
  });
  const formats = values.format ?? ["deb", "ipk"];
  if (formats.some((f) => f !== "deb" && f !== "ipk")) {
    console.error(`package: --format must be deb or ipk (the ipk brings the tarball)`);
    Deno.exit(64);
  }
  if (values.out) DIST = values.out.replace(/\/$/, "");
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
    const deb = formats.includes("deb") ? [await buildDeb(target, payload)] : [];
    const ipks = formats.includes("ipk") ? await buildIpks(target, payload) : [];
    for (const out of [...deb, ...ipks]) console.log(`package: ${out} (${payload.kind} build)`);
  }
}

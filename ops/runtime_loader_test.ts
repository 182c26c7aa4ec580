import { assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import {
  commandThroughLoader,
  LIBRARY_PATH_ENV,
  LOADER_ENV,
  loaderCommand,
  loaderInUse,
  RUNTIME_ENV,
} from "./runtime_loader.ts";

const LOADER = "/usr/lib/keeldns/glibc/ld-linux-x86-64.so.2";
const LIBS = "/usr/lib/keeldns/glibc";
const DENO = "/usr/lib/keeldns/deno";

Deno.test("without a loader a command runs as it is", () => {
  assertEquals(commandThroughLoader(DENO, ["run", "x.js"], {}), { command: DENO, args: ["run", "x.js"] });
  // KEELDNS_DENO alone (KEELDNS_SYSTEM_GLIBC=1 leaves no loader) changes nothing either.
  assertEquals(commandThroughLoader("/bin/deno", ["-V"], { runtime: DENO }), {
    command: "/bin/deno",
    args: ["-V"],
  });
});

Deno.test("under the loader, the loader as command (Deno.execPath()) means the real runtime", () => {
  const env = { loader: LOADER, libraryPath: LIBS, runtime: DENO };
  assertEquals(commandThroughLoader(LOADER, ["run", "--no-prompt", "k.js", "--child"], env), {
    command: LOADER,
    args: ["--library-path", LIBS, DENO, "run", "--no-prompt", "k.js", "--child"],
  });
  // A compiled executable as the runtime: its own arguments only.
  const compiled = { loader: LOADER, libraryPath: LIBS, runtime: "/usr/lib/keeldns/keeldns" };
  assertEquals(commandThroughLoader(LOADER, ["--child", "-c", "f.toml"], compiled), {
    command: LOADER,
    args: ["--library-path", LIBS, "/usr/lib/keeldns/keeldns", "--child", "-c", "f.toml"],
  });
});

Deno.test("under the loader, any other command is run through it as named", () => {
  const env = { loader: LOADER, libraryPath: LIBS, runtime: DENO };
  assertEquals(commandThroughLoader(DENO, ["-V"], env), {
    command: LOADER,
    args: ["--library-path", LIBS, DENO, "-V"],
  });
  assertEquals(commandThroughLoader("/opt/other", [], { loader: LOADER }), {
    command: LOADER,
    args: ["/opt/other"],
  });
});

Deno.test("the loader as command with no runtime known is refused, not run as itself", () => {
  assertThrows(() => commandThroughLoader(LOADER, ["run"], { loader: LOADER, libraryPath: LIBS }));
});

Deno.test("loaderCommand and loaderInUse read the launcher's variables", () => {
  const saved = [LOADER_ENV, LIBRARY_PATH_ENV, RUNTIME_ENV].map((k) => [k, Deno.env.get(k)] as const);
  try {
    for (const [k] of saved) Deno.env.delete(k);
    assertEquals(loaderInUse(), "system loader");
    assertEquals(loaderCommand("/x", ["a"]), { command: "/x", args: ["a"] });
    Deno.env.set(LOADER_ENV, LOADER);
    Deno.env.set(LIBRARY_PATH_ENV, LIBS);
    Deno.env.set(RUNTIME_ENV, DENO);
    assertEquals(loaderCommand(LOADER, ["run"]), {
      command: LOADER,
      args: ["--library-path", LIBS, DENO, "run"],
    });
    // This test process was not started through that loader, and says so.
    assertEquals(loaderInUse(), `system loader (${LOADER_ENV}=${LOADER} not in use)`);
    Deno.env.set(LOADER_ENV, Deno.execPath());
    assertEquals(loaderInUse(), `bundled glibc loader ${Deno.execPath()}`);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
});

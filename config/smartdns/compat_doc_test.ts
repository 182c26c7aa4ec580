import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { COMPAT_DOC_PATH, COMPAT_DOC_URL, compatMarkdown } from "./compat_doc.ts";
import { SMARTDNS_DIRECTIVES } from "./directives.ts";

Deno.test("docs/smartdns-compat.md is what the directive tables say", () => {
  let file = "";
  try {
    file = Deno.readTextFileSync(COMPAT_DOC_URL);
  } catch {
    // missing: reported below like a stale file
  }
  assert(
    file === compatMarkdown(),
    `${COMPAT_DOC_PATH} is out of date with config/smartdns/: run \`deno task compat\` ` +
      `(deno run --allow-write=${COMPAT_DOC_PATH} config/smartdns/compat_doc.ts) and commit the result`,
  );
});

Deno.test("the compat page has one row for every SmartDNS directive, and the option table", () => {
  const page = compatMarkdown();
  for (const name of SMARTDNS_DIRECTIVES) {
    const rows = page.match(new RegExp(`\n\\| \`${name}\` \\| (supported|partly|not yet|refused)`, "g"));
    assertEquals(rows?.length, 1, name);
  }
  assert(
    page.includes(
      "| `server`, `server-tcp` | `-group`, `-g`, `-proxy`, `-p`, `-host-ip`, `-subnet`, `-interface`, " +
        "`-set-mark`, `-tcp-keepalive`, `-exclude-default-group`, `-e`, `-blacklist-ip`, `-whitelist-ip`, " +
        "`-check-edns`, `-bootstrap-dns`, `-b`, `-subnet-all-query-types`, `-fallback` |",
    ),
    page,
  );
  assert(
    /\| `bind`, `bind-tcp` \| address and port, `-group`.*\| .*`-acl`/.test(page),
    "bind -group is honoured and -acl refused",
  );
  assert(/\| `domain-rules` \| `-address`, `-a`, `-nameserver`/.test(page));
});

/**
 * SmartDNS's client directives: who may ask (`acl-enable`), and the run-as user. The model half
 * is `ServerConfig` and `GuardianConfig` in config/schema.ts.
 *
 * @module
 */
import { parseCidr } from "../../net/cidr_set.ts";
import type { DirectiveTable } from "./reader.ts";

/** The client directives. */
export const CLIENTS: DirectiveTable = {
  "acl-enable": {
    toml: 'server.clients = "acl"',
    status: "supported",
    note: "only the client-rules addresses (and loopback) are answered; the others get REFUSED",
    handle: (d, l) => d.aclEnable = d.yesNo(l, 1),
  },
  "client-rules": {
    toml: "server.allowed-clients, group.clients",
    status: "partly",
    note: "without -group the addresses are the ACL's; with -group they pick the client group; MAC " +
      "addresses are not honoured yet (refused)",
    handle: (d, l) => {
      const text = d.text(l, 1);
      if (/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(text)) {
        d.notSupportedCritical("client-rules MAC", l, "clients are told apart by address only", 1);
        return;
      }
      d.value(l, 1, parseCidr);
      let group = d.group;
      d.options(l, 2, { withValue: new Set(["group", "g"]), flags: new Set() }, (_, value) => group = value);
      if (group) d.clientRuleGroups.push({ group, cidr: text, source: d.at(l, 1) });
      else d.allowedClients.push(text);
    },
  },
  "group-begin": {
    toml: "group",
    status: "supported",
    note: "a whole policy per client group: the domain rules and forced answers inside it",
    handle: (d, l) => {
      if (d.group) d.fail(l, 0, `group-begin inside group ${d.group}: end it first with group-end`);
      const name = d.text(l, 1);
      if (!/^[A-Za-z0-9_.-]+$/.test(name)) d.fail(l, 1, `group-begin: "${name}" is not a group name`);
      if (d.groups.get(name)?.source) d.fail(l, 1, `group-begin: group "${name}" is begun twice`);
      d.group = name;
      d.groupDraft().source = d.at(l, 1);
    },
  },
  "group-end": {
    toml: "group",
    status: "supported",
    handle: (d, l) => {
      if (!d.group) d.fail(l, 0, "group-end without group-begin");
      d.group = undefined;
    },
  },
  "group-match": {
    toml: "group.clients",
    status: "partly",
    note: "-client-ip; -domain is not honoured yet (a file using it is refused)",
    handle: (d, l) => {
      if (!d.group) d.fail(l, 0, "group-match outside group-begin … group-end");
      d.options(l, 1, { withValue: new Set(["client-ip", "domain"]), flags: new Set() }, (opt, value) => {
        if (opt === "client-ip") {
          d.value(l, 1, () => parseCidr(value ?? ""));
          d.groupDraft().clients.push(value ?? "");
        } else {
          d.notSupportedCritical(
            "group-match -domain",
            l,
            "the group's rules would not be limited to those domains",
          );
        }
      });
    },
  },
  "max-query-limit": {
    toml: "server.rate-limit",
    status: "partly",
    note: "read as queries per second per client (loopback is never limited)",
    handle: (d, l) => d.rateLimit = d.integer(l, 1, 0, 1_000_000),
  },
  // Whether the user exists is only known on the machine that runs it: start-up refuses an
  // unknown one, `keeldns check` warns (ops/run_as_user.ts).
  "user": {
    toml: "guardian.user",
    status: "supported",
    note: "bind as root, then run as this user, keeping only the capabilities the configuration needs",
    handle: (d, l) => d.user = d.text(l, 1),
  },
};

/**
 * SmartDNS's dashboard plugin lines, mapped onto keeldns's built-in admin listener (TOML
 * `[admin]`): `plugin smartdns_ui.so` (the dashboard is built in; other plugins are not loaded)
 * and the plugin's own `smartdns-ui.*` settings. The `smartdns-ui.*` names are not in SmartDNS's
 * directive table (the plugin reads them), so they have a table of their own.
 *
 * @module
 */
import { parseAdminListen } from "../admin.ts";
import type { DirectiveTable } from "./reader.ts";

/** `plugin PATH`: the dashboard plugin is what keeldns builds in; any other is reported. */
export const PLUGIN: DirectiveTable = {
  "plugin": {
    toml: "(admin: the dashboard is built in)",
    status: "partly",
    note: "`plugin smartdns_ui.so` turns on the built-in dashboard ([admin]); other plugins are not loaded",
    handle: (d, l) => {
      const path = d.text(l, 1);
      if (/(^|\/)(lib)?smartdns[_-]ui\.so$/.test(path)) {
        d.admin.plugin = true;
        d.admin.source ??= d.at(l, 0);
      } else d.notSupported("plugin", l, 1, `plugin ${path} is not loaded (keeldns loads no plugins)`);
    },
  },
};

/** The dashboard plugin's settings. */
export const DASHBOARD: DirectiveTable = {
  "smartdns-ui.ip": {
    toml: "admin.listen",
    status: "supported",
    note: "http://HOST:PORT or https://HOST:PORT (the encrypted listeners' certificate)",
    handle: (d, l) => {
      d.admin.listen = d.value(l, 1, parseAdminListen);
      d.admin.source = d.at(l, 0);
    },
  },
  "smartdns-ui.user": {
    toml: "admin.user",
    status: "supported",
    handle: (d, l) => d.admin.user = d.text(l, 1),
  },
  "smartdns-ui.password": {
    toml: "admin.password-hash",
    status: "supported",
    note: "a password in clear; `keeldns admin-password` makes a hash for admin.password-hash",
    handle: (d, l) => {
      d.admin.password = d.text(l, 1);
      d.warn(l, 1, "smartdns-ui.password keeps the password in clear; `keeldns convert` writes it as a hash");
    },
  },
  "smartdns-ui.token-expire": {
    toml: "admin.session-expire",
    status: "supported",
    handle: (d, l) => d.admin.sessionSeconds = d.integer(l, 1, 60, 30 * 86400),
  },
  "smartdns-ui.max-query-log-age": {
    toml: "admin.query-log-age",
    status: "supported",
    note: "entries older than this are not shown; the query log keeps the last N entries in memory",
    handle: (d, l) => d.admin.queryLogAge = d.integer(l, 1, 0, 365 * 86400),
  },
  "smartdns-ui.www-root": {
    toml: "(none: the page is built in)",
    status: "partly",
    note: "the built-in page is served; another web root is not",
    handle: (d, l) => d.notSupported("smartdns-ui.www-root", l, 0, "the built-in dashboard page is served"),
  },
};

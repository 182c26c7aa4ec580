/**
 * Counters the listeners keep; reported to the guardian and in logs.
 *
 * @module
 */

/** Query and connection counters for one child process. */
export class ServerStats {
  /** Datagrams and TCP messages received. */
  received = 0;
  /** Answers sent. */
  answered = 0;
  /** Messages that were not a parseable query (dropped or answered FORMERR/NOTIMP). */
  malformed = 0;
  /** Answers sent with TC set because they did not fit the client's UDP size. */
  truncated = 0;
  /** Errors thrown while resolving (answered SERVFAIL) or rendering (that message dropped). */
  internalErrors = 0;
  /** Queries refused or dropped by the access rules (not a local client, not in the ACL, rate). */
  refused = 0;
  /** TCP connections accepted. */
  tcpAccepted = 0;
  /** TCP connections refused because the cap was reached. */
  tcpRefused = 0;
  /** TCP connections closed because they stayed over their budget without taking answers. */
  tcpClosedOverBudget = 0;
  /** TCP connections closed because a write took no byte within the write timeout. */
  tcpWriteTimeouts = 0;
}

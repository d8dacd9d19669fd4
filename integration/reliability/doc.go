// Package reliability hurts tenantproxy on purpose and checks that it neither hangs, leaks, crashes nor
// hands a dirty backend to the next client: the server killed, stopped and silenced under load, clients
// that vanish at every stage of their session, exhausted pools and connection limits, slow readers,
// password guessing, oversized and malformed messages, and random frame sequences. Every test runs the real
// proxy in-process (integration/proxytest) over a real PostgreSQL cluster; docs/reliability.md lists what
// is tried and how to run the long fuzz and soak runs.
package reliability

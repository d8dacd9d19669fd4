// Package auth is the server side of PostgreSQL client authentication for the proxy's front door.
//
// After reading a client's StartupMessage the caller looks up the user's configured password (parsed once
// with ParseSecret) and calls Authenticate with the config's [auth] method. Authenticate sends the
// AuthenticationXXX requests and checks the answers; on success the caller sends AuthenticationOk,
// ParameterStatus, BackendKeyData and ReadyForQuery, on an *Error it sends Error.Response (a FATAL
// ErrorResponse) after the configured failure delay and closes the connection.
//
// # Secrets
//
// A user's password is configured as plain text, as a PostgreSQL SCRAM-SHA-256 verifier
// (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as in pg_authid.rolpassword; NewSCRAMVerifier
// makes one) or as an md5 hash ("md5" followed by the 32 hex digits of md5(password || user name)). A
// malformed verifier or hash is an error rather than, as in PostgreSQL, a plain-text password.
//
// # Methods
//
//   - trust: no exchange at all.
//   - password: the cleartext password, only over TLS unless allow_cleartext_without_tls is set (refused
//     with 28000 before the client is asked for the password). It is checked against any kind of secret.
//   - md5: the md5 challenge (plain-text and md5 secrets). A user whose secret is a SCRAM verifier gets
//     SCRAM-SHA-256 instead, as in PostgreSQL. An md5 hash is salted with the user name, so a client that
//     logs in as "alice@acme" needs a hash made with that name; plain text works with any name.
//   - scram-sha-256: SCRAM-SHA-256 (RFC 5802, RFC 7677) and, on TLS when the certificate defines
//     tls-server-end-point channel binding (ChannelBindingData), SCRAM-SHA-256-PLUS. Plain-text and
//     SCRAM secrets work; an md5 secret cannot (the user always fails, like an unknown user).
//
// Passwords are normalized with SASLprep before SCRAM hashing, as PostgreSQL and libpq do, and used as-is
// when they are not valid for SASLprep. For a plain-text secret the SCRAM keys are derived with a salt
// computed from the user name and a per-process random key and 4096 iterations, and cached (a bounded
// map), so PBKDF2 runs once per password rather than at every login.
//
// # Unknown users and mock authentication
//
// A wrong password and an unknown user produce the same error, 28P01 "password authentication failed for
// user "<name>"", and only Error.Reason (never sent) tells them apart. With SCRAM, an unknown user (or one
// whose secret cannot do SCRAM) goes through a complete mock exchange, like PostgreSQL's mock
// authentication: the salt is derived from the user name and the per-process key, so it is the same at
// every attempt and looks like a real one, the iteration count is the default, and the client proof is
// checked before the exchange fails. With md5 an unknown user gets an md5 challenge. Differences that
// remain observable, as in PostgreSQL: under method md5, users with SCRAM verifiers get SCRAM while
// unknown users get md5; salts of plain-text secrets and unknown users change when the proxy restarts
// (PostgreSQL keeps its mock key in pg_control), while verifier salts do not.
//
// # Protocol violations
//
// A wrong message type, a malformed SCRAM message, an unknown mechanism or a channel-binding flag that
// contradicts the offer fail with PostgreSQL's SQLSTATEs and messages (08P01 mostly; 28000 for a
// channel-binding downgrade or mismatch; 0A000 for an authorization identity or a mandatory extension).
// The SCRAM parsers are pure functions, fuzzed. A client that hangs up yields ErrClientClosed.
package auth

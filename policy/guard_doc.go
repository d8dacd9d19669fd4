// Package policy decides what a tenant's session may do: the tenant context a backend gets, and the
// statement guard that checks every statement a client sends before it reaches a shared backend.
//
// # The statement guard
//
// The guard is layer 2 of tenantproxy's security model (docs: security-model.md). Every backend logs in as
// one pool role and is switched to a tenant with SET ROLE, SET search_path and SET of the tenant setting;
// PostgreSQL checks SET ROLE against the session user (the pool role), so a client that could run RESET
// ROLE, SET SESSION AUTHORIZATION, DISCARD ALL, set_config('role', ...) and the like would become the pool
// role or another tenant. Layer 1, the server hardening (EXECUTE on set_config and its kin revoked, no
// USAGE on languages, no TEMP), already leaves top-level statements as the only way to escape; the guard
// nevertheless walks the whole parse tree of every statement, for defence in depth.
//
// The guard parses with PostgreSQL's own grammar (libpg_query through pg_query_go), so comments, quoting,
// case, unicode escapes (U&"..."), dollar quoting and multi-statement messages are read exactly as the
// server reads them. Parity holds because client_encoding never becomes a client-only encoding and
// standard_conforming_strings stays on (both enforced here).
//
// Guard.Check classifies a simple Query message (all its statements) and Guard.CheckParse a Parse message
// (one statement at most). A message is refused as a whole when any statement is refused. Classification
// does not depend on the tenant and is cached by text (a bounded LRU); Classification.Decide then applies
// the profile and the tenant's schemas without allocating.
//
// # Refused for every profile (SQLSTATE 42501 unless noted)
//
//   - SET, SET LOCAL and RESET of role or session_authorization (SET ROLE, SET SESSION AUTHORIZATION,
//     RESET ROLE ...), also as a SET clause of a function.
//   - SET of the tenant setting and of any custom setting (a name with a dot): an RLS policy may trust it.
//   - SET search_path naming a schema not among the tenant's schemas (case as PostgreSQL folds it, "$user"
//     never), RESET search_path and SET search_path TO DEFAULT.
//   - SET client_encoding (or SET NAMES) to a client-only encoding (SJIS, BIG5, GBK, UHC, GB18030, JOHAB,
//     SHIFT_JIS_2004, in any spelling), and SET standard_conforming_strings to anything but on.
//   - SET of any setting not on the allowlist (settings.go), with a message naming it; among them
//     session_replication_role, allow_system_table_mods, exit_on_error, lc_messages, backslash_quote,
//     temp_tablespaces.
//   - Calls, anywhere in a statement (WHERE, LATERAL, subqueries, CTEs, COPY (query), EXPLAIN ANALYZE,
//     column defaults, CHECK constraints, index expressions, policies, rule actions, function arguments),
//     of: set_config; the functions that run SQL text or read cursors by name (query_to_xml,
//     query_to_xmlschema, query_to_xml_and_xmlschema, cursor_to_xml, cursor_to_xmlschema, ts_stat,
//     ts_rewrite with a query argument); database_to_xml* and schema_to_xml*; dblink*; the server file
//     functions (pg_read_*, pg_ls_*, pg_stat_file, pg_file_*, lo_import, lo_export); the server control
//     functions (pg_reload_conf, pg_terminate_backend, pg_cancel_backend, backup, WAL, replication slot
//     and origin functions, pg_stat_reset*); setseed, pg_prepared_statement and pg_cursor, whose state is
//     the shared backend's. Names match in any case and any schema, as the parser reads them (quoted or
//     unicode-escaped). Naming such a function outside a call (CREATE AGGREGATE SFUNC, CREATE CAST,
//     CREATE TRIGGER ... EXECUTE FUNCTION, ALTER FUNCTION) is refused too.
//   - Reading pg_prepared_statements or pg_cursors, and INSERT, UPDATE, DELETE or MERGE on pg_settings.
//   - DO; CREATE FUNCTION or PROCEDURE and ALTER FUNCTION, PROCEDURE or ROUTINE except for the owner
//     profile, and even then never SECURITY DEFINER, never a SET clause that SET LOCAL could not do, and
//     only LANGUAGE sql or plpgsql. Their bodies are checked like messages: a sql body statement by
//     statement, a plpgsql body with PL/pgSQL's grammar (every statement and expression in it); a body
//     may not leave session state (SET, temporary tables, advisory locks, ...), and plpgsql EXECUTE of a
//     string (dynamic SQL, RETURN QUERY EXECUTE, FOR ... IN EXECUTE, OPEN ... FOR EXECUTE) is refused.
//   - Roles (CREATE, ALTER, DROP ROLE/USER/GROUP, GRANT and REVOKE of roles, REASSIGN OWNED, DROP OWNED),
//     GRANT and REVOKE of privileges, ALTER DEFAULT PRIVILEGES, ALTER SYSTEM, ALTER ROLE or DATABASE ...
//     SET, CREATE, ALTER and DROP of databases, tablespaces, schemas, extensions, languages, access methods,
//     transforms, conversions, foreign data wrappers, servers, user mappings, foreign tables, publications,
//     subscriptions and event triggers; LOAD; CHECKPOINT; SECURITY LABEL; two-phase commit (PREPARE
//     TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED).
//   - COPY to or from a server file or a PROGRAM (COPY ... FROM STDIN and TO STDOUT are fine).
//   - DISCARD ALL or RESET ALL that is not the only statement of its message.
//   - Text the parser cannot parse (42601, with the parser's message), a Parse message with more than one
//     statement (42601), a SET whose value is not a single constant where one is needed (22023), and any
//     statement kind the guard does not know.
//
// # Profiles
//
// ProfileReadonly may run SELECT and VALUES (without FOR UPDATE/SHARE, SELECT INTO or data-modifying
// CTEs), SHOW, EXPLAIN (ANALYZE) of what it may run, COPY (query) or table TO STDOUT, transaction control,
// SET of allowed settings, DECLARE (with or without HOLD), FETCH, CLOSE, PREPARE of what it may run,
// EXECUTE, DEALLOCATE, LISTEN, UNLISTEN, NOTIFY, SET CONSTRAINTS and DISCARD. It may not turn read-only
// transactions off (BEGIN READ WRITE, SET TRANSACTION READ WRITE, SET SESSION CHARACTERISTICS ... READ
// WRITE, SET default_transaction_read_only or transaction_read_only to off, or RESET them). Everything
// else is refused with 25006 (read_only_sql_transaction), the code the server gives a read-only
// transaction. ProfileApp adds DML (INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM STDIN, LOCK, CALL,
// REFRESH MATERIALIZED VIEW, VACUUM, ANALYZE) and temporary objects (CREATE TEMP TABLE/VIEW/SEQUENCE,
// SELECT INTO TEMP, and CREATE INDEX, ALTER and DROP of objects named pg_temp.<name>); other DDL is refused
// with 42501. ProfileOwner adds DDL inside what the server's grants allow. The guard cannot know what a
// called function does: a read-only user's SELECT of a function that writes (nextval(), a tenant's own
// function) is stopped only by the server, so the tenant context of a read-only user should include
// SET default_transaction_read_only = on, which this profile may not turn off.
//
// # Emulated, tracked and reported
//
// The guard never rewrites a statement; it reports Effects that the session acts on:
//
//   - Emulated: DISCARD ALL (EffectDiscardAll) and RESET ALL (EffectResetAll) from drivers' pool resets.
//     The session must not send them as they are (DISCARD ALL resets the session authorization, RESET ALL
//     the search_path and the tenant setting): it drops the client's tracked state and keeps the tenant
//     context.
//   - Tracked: a plain SET, RESET or SET ... TO DEFAULT of an allowed setting (EffectSetTracked), and SET
//     SESSION CHARACTERISTICS (as default_transaction_isolation, default_transaction_read_only and
//     default_transaction_deferrable). The session applies an effect once the server has completed its
//     statement and the transaction has committed (a SET inside a transaction that rolls back, or after a
//     savepoint rolled back to, is undone), and replays Effect.ReplaySQL on every lease. SET LOCAL of an
//     allowed setting (EffectSetLocal) and transaction_isolation, transaction_read_only and
//     transaction_deferrable end with the transaction: nothing to track. standard_conforming_strings = on
//     is allowed and not tracked, as it never changes.
//   - Session state that outlives a transaction, which the session pins or refuses in transaction pooling:
//     EffectTempTable, EffectHoldCursor, EffectListen, EffectAdvisoryLock (session-level lock functions
//     called anywhere; the _xact_ ones are fine), EffectPrepare, with EffectDiscardTemp, EffectClose,
//     EffectUnlisten, EffectAdvisoryUnlock, EffectExecute and EffectDeallocate to follow it.
//   - Reported for the session's bookkeeping: transaction control (EffectBegin, EffectCommit,
//     EffectRollback, EffectSavepoint, EffectRelease, EffectRollbackTo) and EffectNotify (NOTIFY and
//     pg_notify()). Notification channels are database-wide, shared by every tenant.
//
// Settings changed inside a function body at run time (a plpgsql SET, or PERFORM set_config where layer 1
// does not stop it) are invisible to any statement guard; only the lease protocol and the tripwire can
// catch them.
package policy

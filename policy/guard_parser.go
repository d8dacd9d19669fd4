package policy

import (
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// parserMu serializes the guard's calls into libpg_query. Around every parse, libpg_query redirects the
// process's standard error (file descriptor 2) into a pipe and back; two parses at once on different
// threads could leave descriptor 2 pointing at a closed pipe, and Go ends a program whose write to
// descriptor 2 meets a broken pipe. Cached verdicts do not parse, so the lock is off the hot path.
var parserMu sync.Mutex

// parseSQL parses text with PostgreSQL's grammar.
func parseSQL(text string) (*pg_query.ParseResult, error) {
	parserMu.Lock()
	defer parserMu.Unlock()
	return pg_query.Parse(text)
}

// parsePlpgsql parses the PL/pgSQL body of the one CREATE FUNCTION statement in text, returning
// pg_query's JSON tree. The caller must have checked that the statement has exactly one body and
// LANGUAGE plpgsql: libpg_query aborts the process on a CREATE FUNCTION without a body.
func parsePlpgsql(text string) (string, error) {
	parserMu.Lock()
	defer parserMu.Unlock()
	return pg_query.ParsePlPgSqlToJSON(text)
}

// Fingerprint returns libpg_query's fingerprint of sql: the same for statements that differ only in
// constants, white space and comments, for audit records that must not hold values. Every use of
// libpg_query in the process must go through this package (or hold parserMu), for the reason above.
func Fingerprint(sql string) (string, error) {
	parserMu.Lock()
	defer parserMu.Unlock()
	return pg_query.Fingerprint(sql)
}

// Normalize returns sql with its constants replaced by $n parameters, under the same lock as every other
// use of libpg_query. It parses the text, so it costs about as much as an uncached Check.
func Normalize(sql string) (string, error) {
	parserMu.Lock()
	defer parserMu.Unlock()
	return pg_query.Normalize(sql)
}

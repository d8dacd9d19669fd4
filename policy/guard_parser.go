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

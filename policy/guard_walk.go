package policy

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// walk visits every node of a statement's tree, wherever it is (target lists, WHERE, LATERAL, subqueries,
// CTEs, column defaults, CHECK constraints, index expressions, function arguments, rule actions,
// function bodies written BEGIN ATOMIC...), and checks function calls, function references, relations and
// nested data-modifying statements. Constants are not entered: a string that names a function is not a call.
func (s *stmtCtx) walk(m protoreflect.Message) {
	switch x := m.Interface().(type) {
	case *pg_query.A_Const:
		return
	case *pg_query.FuncCall:
		s.funcCall(x)
	case *pg_query.ObjectWithArgs:
		s.functionName(x.GetObjname(), "")
	case *pg_query.RangeVar:
		if isCatalogName(x.GetSchemaname()) {
			switch strings.ToLower(x.GetRelname()) {
			case "pg_prepared_statements":
				s.refuse(SQLStatePolicy, "pg_prepared_statements is not allowed: it lists the prepared statements of a backend that other tenants share")
			case "pg_cursors":
				s.refuse(SQLStatePolicy, "pg_cursors is not allowed: it lists the cursors of a backend that other tenants share")
			}
		}
	case *pg_query.LockingClause:
		s.need(levelWrite, "SELECT ... FOR UPDATE/SHARE")
	case *pg_query.InsertStmt:
		s.modifies(x.GetRelation(), "INSERT")
	case *pg_query.UpdateStmt:
		s.modifies(x.GetRelation(), "UPDATE")
	case *pg_query.DeleteStmt:
		s.modifies(x.GetRelation(), "DELETE")
	case *pg_query.MergeStmt:
		s.modifies(x.GetRelation(), "MERGE")
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				s.walk(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			s.walk(v.Message())
		}
		return true
	})
}

// isCatalogName reports whether an unqualified or pg_catalog-qualified name can resolve to the catalog.
func isCatalogName(schema string) bool {
	return schema == "" || strings.EqualFold(schema, "pg_catalog")
}

// modifies records a data-modifying statement, wherever it is (a CTE, a rule), and refuses writing to
// pg_settings, whose update rule calls set_config.
func (s *stmtCtx) modifies(rel *pg_query.RangeVar, tag string) {
	s.need(levelWrite, tag)
	if isCatalogName(rel.GetSchemaname()) && strings.EqualFold(rel.GetRelname(), "pg_settings") {
		s.refuse(SQLStatePolicy, "%s on pg_settings is not allowed: it changes settings as set_config() does", tag)
	}
}

// funcKind says how the guard treats a call of a function.
type funcKind uint8

const (
	funcRefused        funcKind = iota + 1
	funcRefusedTwoArgs          // ts_rewrite(query, 'select ...') runs SQL text; ts_rewrite with three arguments does not
	funcAdvisoryLock            // a session-level advisory lock: it outlives the transaction
	funcAdvisoryUnlock          // the release of session-level advisory locks
	funcNotify                  // pg_notify
)

// funcRule is the guard's rule for a function, matched by its name in any schema and any case.
type funcRule struct {
	kind   funcKind
	reason string
}

// Reasons for refused functions.
const (
	reasonSettings = "it changes settings, including the role, search_path and the tenant"
	reasonSQLText  = "it runs SQL text that tenantproxy cannot check"
	reasonExport   = "it exports whole schemas, beyond what a statement names"
	reasonCursor   = "it reads a cursor by name, and a shared backend holds cursors of other tenants"
	reasonRemote   = "it connects to other servers"
	reasonFiles    = "it reads or writes files on the database server"
	reasonServer   = "it controls the database server, which all tenants share"
	reasonLargeObj = "large objects belong to the whole database, outside every tenant's schema"
)

// funcRules are the functions the guard refuses or reports, by lower-case name.
var funcRules = map[string]funcRule{
	"set_config":                     {funcRefused, reasonSettings},
	"query_to_xml":                   {funcRefused, reasonSQLText},
	"query_to_xmlschema":             {funcRefused, reasonSQLText},
	"query_to_xml_and_xmlschema":     {funcRefused, reasonSQLText},
	"ts_stat":                        {funcRefused, reasonSQLText},
	"ts_rewrite":                     {funcRefusedTwoArgs, reasonSQLText},
	"cursor_to_xml":                  {funcRefused, reasonCursor},
	"cursor_to_xmlschema":            {funcRefused, reasonCursor},
	"database_to_xml":                {funcRefused, reasonExport},
	"database_to_xmlschema":          {funcRefused, reasonExport},
	"database_to_xml_and_xmlschema":  {funcRefused, reasonExport},
	"schema_to_xml":                  {funcRefused, reasonExport},
	"schema_to_xmlschema":            {funcRefused, reasonExport},
	"schema_to_xml_and_xmlschema":    {funcRefused, reasonExport},
	"lo_import":                      {funcRefused, reasonFiles},
	"lo_export":                      {funcRefused, reasonFiles},
	"lo_create":                      {funcRefused, reasonLargeObj},
	"lo_creat":                       {funcRefused, reasonLargeObj},
	"lo_from_bytea":                  {funcRefused, reasonLargeObj},
	"lo_open":                        {funcRefused, reasonLargeObj},
	"lo_put":                         {funcRefused, reasonLargeObj},
	"lo_get":                         {funcRefused, reasonLargeObj},
	"lo_unlink":                      {funcRefused, reasonLargeObj},
	"lo_truncate":                    {funcRefused, reasonLargeObj},
	"lo_truncate64":                  {funcRefused, reasonLargeObj},
	"lowrite":                        {funcRefused, reasonLargeObj},
	"loread":                         {funcRefused, reasonLargeObj},
	"pg_stat_file":                   {funcRefused, reasonFiles},
	"pg_logdir_ls":                   {funcRefused, reasonFiles},
	"pg_current_logfile":             {funcRefused, reasonFiles},
	"pg_reload_conf":                 {funcRefused, reasonServer},
	"pg_rotate_logfile":              {funcRefused, reasonServer},
	"pg_terminate_backend":           {funcRefused, reasonServer},
	"pg_cancel_backend":              {funcRefused, reasonServer},
	"pg_promote":                     {funcRefused, reasonServer},
	"pg_switch_wal":                  {funcRefused, reasonServer},
	"pg_create_restore_point":        {funcRefused, reasonServer},
	"pg_start_backup":                {funcRefused, reasonServer},
	"pg_stop_backup":                 {funcRefused, reasonServer},
	"pg_log_backend_memory_contexts": {funcRefused, reasonServer},
	"pg_import_system_collations":    {funcRefused, reasonServer},
	"setseed":                        {funcRefused, "it seeds the random numbers of a backend that other tenants share"},
	"pg_prepared_statement":          {funcRefused, "it lists the prepared statements of a backend that other tenants share"},
	"pg_cursor":                      {funcRefused, "it lists the cursors of a backend that other tenants share"},
	"pg_advisory_lock":               {funcAdvisoryLock, ""},
	"pg_advisory_lock_shared":        {funcAdvisoryLock, ""},
	"pg_try_advisory_lock":           {funcAdvisoryLock, ""},
	"pg_try_advisory_lock_shared":    {funcAdvisoryLock, ""},
	"pg_advisory_unlock":             {funcAdvisoryUnlock, ""},
	"pg_advisory_unlock_shared":      {funcAdvisoryUnlock, ""},
	"pg_advisory_unlock_all":         {funcAdvisoryUnlock, ""},
	"pg_notify":                      {funcNotify, ""},
}

// funcPrefixRules refuse families of functions by the start of their name.
var funcPrefixRules = []struct {
	prefix string
	rule   funcRule
}{
	{"dblink", funcRule{funcRefused, reasonRemote}},
	{"pg_read_", funcRule{funcRefused, reasonFiles}},
	{"pg_ls_", funcRule{funcRefused, reasonFiles}},
	{"pg_file_", funcRule{funcRefused, reasonFiles}},
	{"pg_backup_", funcRule{funcRefused, reasonServer}},
	{"pg_wal_replay_", funcRule{funcRefused, reasonServer}},
	{"pg_stat_reset", funcRule{funcRefused, reasonServer}},
	{"pg_stat_statements_reset", funcRule{funcRefused, reasonServer}},
	{"pg_replication_origin_", funcRule{funcRefused, reasonServer}},
	{"pg_logical_", funcRule{funcRefused, reasonServer}},
}

// funcRuleFor returns the rule for a function's lower-case name, if it has one.
func funcRuleFor(name string) (funcRule, bool) {
	if r, ok := funcRules[name]; ok {
		return r, true
	}
	for _, p := range funcPrefixRules {
		if strings.HasPrefix(name, p.prefix) {
			return p.rule, true
		}
	}
	if strings.Contains(name, "replication_slot") {
		return funcRule{funcRefused, reasonServer}, true
	}
	return funcRule{}, false
}

// funcCall checks a call of a function.
func (s *stmtCtx) funcCall(fc *pg_query.FuncCall) {
	name := strings.ToLower(lastName(fc.GetFuncname()))
	r, ok := funcRuleFor(name)
	if !ok {
		return
	}
	switch r.kind {
	case funcRefused:
		s.refuse(SQLStatePolicy, "function %s() is not allowed: %s", name, r.reason)
	case funcRefusedTwoArgs:
		if len(fc.GetArgs()) == 2 {
			s.refuse(SQLStatePolicy, "function %s() with a query argument is not allowed: %s", name, r.reason)
		}
	case funcAdvisoryLock:
		s.effect(Effect{Kind: EffectAdvisoryLock, Name: name})
	case funcAdvisoryUnlock:
		s.effect(Effect{Kind: EffectAdvisoryUnlock, Name: name})
	case funcNotify:
		channel := ""
		if args := fc.GetArgs(); len(args) > 0 {
			channel, _ = constText(args[0].GetAConst())
		}
		s.effect(Effect{Kind: EffectNotify, Name: channel})
	}
}

// functionName refuses a reference to a refused function, or to a session-level advisory lock function,
// outside a call: CREATE AGGREGATE (SFUNC = set_config), CREATE CAST ... WITH FUNCTION, CREATE TRIGGER ...
// EXECUTE FUNCTION, ALTER FUNCTION. Such a function would run later, where the guard does not see it.
func (s *stmtCtx) functionName(names []*pg_query.Node, option string) {
	name := strings.ToLower(lastName(names))
	r, ok := funcRuleFor(name)
	if !ok || r.kind == funcNotify || r.kind == funcAdvisoryUnlock {
		return
	}
	reason := r.reason
	if r.kind == funcAdvisoryLock {
		reason = "its session-level lock would outlive the transaction unseen"
	}
	if option != "" {
		s.refuse(SQLStatePolicy, "%s = %s is not allowed: %s", option, name, reason)
		return
	}
	s.refuse(SQLStatePolicy, "a reference to function %s() is not allowed: %s", name, reason)
}

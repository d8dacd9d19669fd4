package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
)

// maxBodyDepth bounds how deeply the guard follows function bodies that create functions.
const maxBodyDepth = 3

// classify parses sql and classifies every statement. It never panics: should a bug make it panic, the
// text is refused.
func (g *Guard) classify(sql string) (c *Classification) {
	defer func() {
		if r := recover(); r != nil {
			c = refusedText(SQLStatePolicy, fmt.Sprintf("tenantproxy: the statement could not be checked (%v), so it is refused", r))
		}
	}()
	if strings.IndexByte(sql, 0) >= 0 {
		return refusedText(SQLStateSyntax, "tenantproxy: the statement text contains a zero byte")
	}
	tree, err := parseSQL(sql)
	if err != nil {
		var perr *parser.Error
		if !errors.As(err, &perr) || perr.Message == "" {
			// Not the grammar's error (text that is not UTF-8, which pg_query cannot carry): tenantproxy's.
			return refusedText(SQLStateSyntax, "tenantproxy: the statement cannot be parsed: "+parseErrorMessage(err))
		}
		// The server parses with the same grammar and would raise this error itself: the client gets it
		// exactly as the server raises it, message and position, without tenantproxy's prefix.
		c := refusedText(SQLStateSyntax, perr.Message)
		c.refusal.position = parseErrorPosition(err)
		c.refusal.server = true
		return c
	}
	c = &Classification{stmts: make([]stmtInfo, len(tree.Stmts)), spans: make([]Span, len(tree.Stmts))}
	for i, raw := range tree.Stmts {
		c.spans[i] = stmtSpan(sql, raw)
		s := stmtCtx{g: g, idx: i, text: stmtText(sql, raw)}
		s.top(raw.Stmt)
		c.stmts[i] = s.info
		if s.ref != nil && c.refusal == nil {
			c.refusal = s.ref
		}
		c.effects = append(c.effects, s.effects...)
	}
	if len(c.stmts) > 1 && c.refusal == nil {
		for _, e := range c.effects {
			if e.Kind == EffectDiscardAll || e.Kind == EffectResetAll {
				what := "DISCARD ALL"
				if e.Kind == EffectResetAll {
					what = "RESET ALL"
				}
				c.refusal = &refusal{sqlState: SQLStatePolicy, stmt: e.Stmt,
					reason: "tenantproxy: " + what + " must be the only statement of its message: tenantproxy emulates it to keep the tenant's context"}
				break
			}
		}
	}
	if c.refusal != nil {
		c.effects = nil
	}
	c.effects = slices.Clip(c.effects) // callers share it: an append must copy
	return c
}

// refusedText is the classification of a text refused as a whole.
func refusedText(state, reason string) *Classification {
	return &Classification{refusal: &refusal{sqlState: state, reason: reason, stmt: -1}}
}

// parseErrorMessage returns the parser's own message for err.
func parseErrorMessage(err error) string {
	var perr *parser.Error
	if errors.As(err, &perr) && perr.Message != "" {
		return perr.Message
	}
	return err.Error()
}

// parseErrorPosition returns the parser's cursor position for err: 1-based, in characters, as
// PostgreSQL's ErrorResponse Position field counts; 0 when the error has none.
func parseErrorPosition(err error) int {
	var perr *parser.Error
	if errors.As(err, &perr) && perr.Cursorpos > 0 {
		return perr.Cursorpos
	}
	return 0
}

// stmtSpan returns where one statement of src lies.
func stmtSpan(src string, raw *pg_query.RawStmt) Span {
	start, n := int(raw.GetStmtLocation()), int(raw.GetStmtLen())
	if start < 0 || start > len(src) {
		return Span{len(src), len(src)}
	}
	if n <= 0 || start+n > len(src) {
		return Span{start, len(src)}
	}
	return Span{start, start + n}
}

// stmtText returns the text of one statement of src.
func stmtText(src string, raw *pg_query.RawStmt) string {
	start, n := int(raw.GetStmtLocation()), int(raw.GetStmtLen())
	if start < 0 || start > len(src) {
		return ""
	}
	if n <= 0 || start+n > len(src) {
		return src[start:]
	}
	return src[start : start+n]
}

// stmtCtx collects the classification of one top-level statement.
type stmtCtx struct {
	g       *Guard
	idx     int
	text    string // the statement's own text
	depth   int    // how many function bodies deep the statement is
	info    stmtInfo
	effects []Effect
	ref     *refusal
}

// refuse records a refusal of the statement (the first one wins).
func (s *stmtCtx) refuse(state, format string, args ...any) {
	if s.ref == nil {
		s.ref = &refusal{sqlState: state, reason: "tenantproxy: " + fmt.Sprintf(format, args...), stmt: s.idx}
	}
}

// need raises the profile level the statement needs; tag names the statement in messages.
func (s *stmtCtx) need(l level, tag string) {
	if l > s.info.level || s.info.tag == "" {
		if l > s.info.level {
			s.info.level = l
		}
		s.info.tag = tag
	}
}

// ownerOnly marks a statement that only the owner profile may run, with the reason the app profile gets.
func (s *stmtCtx) ownerOnly(tag, appReason string) {
	s.need(levelOwner, tag)
	s.info.tag = tag
	s.info.appReason = appReason
}

// effect records an effect of the statement.
func (s *stmtCtx) effect(e Effect) {
	e.Stmt = s.idx
	s.effects = append(s.effects, e)
}

// top classifies a top-level statement: first by its kind, then by walking its whole tree for function
// calls, relations and nested data-modifying statements.
func (s *stmtCtx) top(n *pg_query.Node) {
	if s.harmless(n) {
		return
	}
	s.stmt(n)
	if n != nil {
		s.walk(n.ProtoReflect())
	}
}

// stmt classifies statement n by its kind. Statements that wrap another (EXPLAIN, COPY (query), PREPARE,
// DECLARE, CREATE TABLE AS, CREATE VIEW) classify the wrapped statement too.
func (s *stmtCtx) stmt(n *pg_query.Node) {
	if n == nil {
		return
	}
	if n.Node == nil {
		s.refuse(SQLStatePolicy, "an empty statement node is not supported by tenantproxy")
		return
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		s.need(levelRead, "SELECT")
		if into := x.SelectStmt.GetIntoClause(); into != nil {
			s.into(into, "SELECT INTO", pg_query.ObjectType_OBJECT_TABLE)
		}
	case *pg_query.Node_InsertStmt:
		s.need(levelWrite, "INSERT")
	case *pg_query.Node_UpdateStmt:
		s.need(levelWrite, "UPDATE")
	case *pg_query.Node_DeleteStmt:
		s.need(levelWrite, "DELETE")
	case *pg_query.Node_MergeStmt:
		s.need(levelWrite, "MERGE")
	case *pg_query.Node_TruncateStmt:
		s.need(levelWrite, "TRUNCATE")
	case *pg_query.Node_LockStmt:
		s.need(levelWrite, "LOCK")
	case *pg_query.Node_CallStmt:
		s.need(levelWrite, "CALL")
	case *pg_query.Node_RefreshMatViewStmt:
		s.need(levelWrite, "REFRESH MATERIALIZED VIEW")
	case *pg_query.Node_VacuumStmt:
		s.vacuum(x.VacuumStmt)
	case *pg_query.Node_CopyStmt:
		s.copy(x.CopyStmt)
	case *pg_query.Node_VariableShowStmt:
		s.need(levelRead, "SHOW")
	case *pg_query.Node_ExplainStmt:
		s.need(levelRead, "EXPLAIN")
		s.stmt(x.ExplainStmt.GetQuery())
	case *pg_query.Node_TransactionStmt:
		s.transaction(x.TransactionStmt)
	case *pg_query.Node_VariableSetStmt:
		s.variableSet(x.VariableSetStmt, "")
	case *pg_query.Node_ConstraintsSetStmt:
		s.need(levelRead, "SET CONSTRAINTS")
	case *pg_query.Node_DiscardStmt:
		s.discard(x.DiscardStmt)
	case *pg_query.Node_DeclareCursorStmt:
		d := x.DeclareCursorStmt
		s.need(levelRead, "DECLARE")
		if d.GetOptions()&cursorOptHold != 0 {
			s.effect(Effect{Kind: EffectHoldCursor, Name: d.GetPortalname()})
		}
		s.stmt(d.GetQuery())
	case *pg_query.Node_FetchStmt:
		s.need(levelRead, "FETCH")
	case *pg_query.Node_ClosePortalStmt:
		s.need(levelRead, "CLOSE")
		s.effect(Effect{Kind: EffectClose, Name: x.ClosePortalStmt.GetPortalname()})
	case *pg_query.Node_ListenStmt:
		s.need(levelRead, "LISTEN")
		s.effect(Effect{Kind: EffectListen, Name: x.ListenStmt.GetConditionname()})
	case *pg_query.Node_UnlistenStmt:
		s.need(levelRead, "UNLISTEN")
		s.effect(Effect{Kind: EffectUnlisten, Name: x.UnlistenStmt.GetConditionname()})
	case *pg_query.Node_NotifyStmt:
		s.need(levelRead, "NOTIFY")
		s.effect(Effect{Kind: EffectNotify, Name: x.NotifyStmt.GetConditionname(), Value: x.NotifyStmt.GetPayload()})
	case *pg_query.Node_PrepareStmt:
		s.need(levelRead, "PREPARE")
		s.effect(Effect{Kind: EffectPrepare, Name: x.PrepareStmt.GetName()})
		s.stmt(x.PrepareStmt.GetQuery())
	case *pg_query.Node_ExecuteStmt:
		s.need(levelRead, "EXECUTE")
		s.effect(Effect{Kind: EffectExecute, Name: x.ExecuteStmt.GetName()})
	case *pg_query.Node_DeallocateStmt:
		s.need(levelRead, "DEALLOCATE")
		s.effect(Effect{Kind: EffectDeallocate, Name: x.DeallocateStmt.GetName()})
	case *pg_query.Node_CreateStmt:
		rel := x.CreateStmt.GetRelation()
		if isTempRelation(rel) {
			s.need(levelWrite, "CREATE TEMPORARY TABLE")
			s.effect(Effect{Kind: EffectTempTable, Name: rel.GetRelname(),
				Transient: x.CreateStmt.GetOncommit() == pg_query.OnCommitAction_ONCOMMIT_DROP})
		} else {
			s.ownerOnly("CREATE TABLE", "schema changes need the owner profile; a temporary table may be created with CREATE TEMPORARY TABLE")
		}
	case *pg_query.Node_CreateTableAsStmt:
		ct := x.CreateTableAsStmt
		if ct.GetObjtype() == pg_query.ObjectType_OBJECT_MATVIEW {
			s.ownerOnly("CREATE MATERIALIZED VIEW", "")
		} else {
			s.into(ct.GetInto(), "CREATE TABLE AS", ct.GetObjtype())
		}
		s.stmt(ct.GetQuery())
	case *pg_query.Node_ViewStmt:
		if rel := x.ViewStmt.GetView(); isTempRelation(rel) {
			s.need(levelWrite, "CREATE TEMPORARY VIEW")
			s.effect(Effect{Kind: EffectTempTable, Name: rel.GetRelname()})
		} else {
			s.ownerOnly("CREATE VIEW", "")
		}
		s.stmt(x.ViewStmt.GetQuery())
	case *pg_query.Node_CreateSeqStmt:
		if rel := x.CreateSeqStmt.GetSequence(); isTempRelation(rel) {
			s.need(levelWrite, "CREATE TEMPORARY SEQUENCE")
			s.effect(Effect{Kind: EffectTempTable, Name: rel.GetRelname()})
		} else {
			s.ownerOnly("CREATE SEQUENCE", "")
		}
	case *pg_query.Node_IndexStmt:
		if isTempRelation(x.IndexStmt.GetRelation()) {
			s.need(levelWrite, "CREATE INDEX")
		} else {
			s.ownerOnly("CREATE INDEX", "schema changes need the owner profile; an index on a temporary table may be created ON pg_temp.<table>")
		}
	case *pg_query.Node_AlterTableStmt:
		tag := "ALTER " + objectTypeName(x.AlterTableStmt.GetObjtype())
		if isTempRelation(x.AlterTableStmt.GetRelation()) {
			s.need(levelWrite, tag)
		} else {
			s.ownerOnly(tag, "")
		}
	case *pg_query.Node_DropStmt:
		s.drop(x.DropStmt)
	case *pg_query.Node_RenameStmt:
		s.objectStmt("ALTER "+objectTypeName(x.RenameStmt.GetRenameType())+" RENAME", x.RenameStmt.GetRenameType())
	case *pg_query.Node_AlterOwnerStmt:
		s.objectStmt("ALTER "+objectTypeName(x.AlterOwnerStmt.GetObjectType())+" OWNER", x.AlterOwnerStmt.GetObjectType())
	case *pg_query.Node_AlterObjectSchemaStmt:
		s.objectStmt("ALTER "+objectTypeName(x.AlterObjectSchemaStmt.GetObjectType())+" SET SCHEMA", x.AlterObjectSchemaStmt.GetObjectType())
	case *pg_query.Node_AlterObjectDependsStmt:
		s.objectStmt("ALTER "+objectTypeName(x.AlterObjectDependsStmt.GetObjectType())+" DEPENDS ON EXTENSION", pg_query.ObjectType_OBJECT_EXTENSION)
	case *pg_query.Node_CreateFunctionStmt:
		s.createFunction(x.CreateFunctionStmt)
	case *pg_query.Node_AlterFunctionStmt:
		s.alterFunction(x.AlterFunctionStmt)
	case *pg_query.Node_DefineStmt:
		s.ownerOnly("CREATE "+objectTypeName(x.DefineStmt.GetKind()), "")
		s.functionOptions(x.DefineStmt.GetDefinition())
		if isTempName(x.DefineStmt.GetDefnames()) {
			s.effect(Effect{Kind: EffectTempTable, Name: lastName(x.DefineStmt.GetDefnames())})
		}
	case *pg_query.Node_AlterOperatorStmt:
		s.ownerOnly("ALTER OPERATOR", "")
		s.functionOptions(x.AlterOperatorStmt.GetOptions())
	case *pg_query.Node_AlterTypeStmt:
		s.ownerOnly("ALTER TYPE", "")
		s.functionOptions(x.AlterTypeStmt.GetOptions())
	case *pg_query.Node_CreateRangeStmt:
		s.ownerOnly("CREATE TYPE", "")
		s.functionOptions(x.CreateRangeStmt.GetParams())
	case *pg_query.Node_CreateTrigStmt:
		s.ownerOnly("CREATE TRIGGER", "")
		s.functionName(x.CreateTrigStmt.GetFuncname(), "")
	case *pg_query.Node_CompositeTypeStmt, *pg_query.Node_CreateEnumStmt:
		s.ownerOnly("CREATE TYPE", "")
	case *pg_query.Node_AlterEnumStmt:
		s.ownerOnly("ALTER TYPE", "")
	case *pg_query.Node_CommentStmt:
		s.ownerOnly("COMMENT", "")
	default:
		s.fixedStmt(n)
	}
}

// cursorOptHold is PostgreSQL's CURSOR_OPT_HOLD: DECLARE ... WITH HOLD.
const cursorOptHold = 0x0020

// fixedStmt classifies the statements whose verdict depends on their kind alone.
func (s *stmtCtx) fixedStmt(n *pg_query.Node) {
	tag := tagOf(n)
	switch n.Node.(type) {
	case *pg_query.Node_ClusterStmt, *pg_query.Node_ReindexStmt, *pg_query.Node_AlterDomainStmt,
		*pg_query.Node_CreateDomainStmt, *pg_query.Node_AlterCollationStmt, *pg_query.Node_CreatePolicyStmt,
		*pg_query.Node_AlterPolicyStmt, *pg_query.Node_AlterSeqStmt, *pg_query.Node_CreateOpClassStmt,
		*pg_query.Node_CreateOpFamilyStmt, *pg_query.Node_AlterOpFamilyStmt, *pg_query.Node_CreateStatsStmt,
		*pg_query.Node_AlterStatsStmt, *pg_query.Node_RuleStmt, *pg_query.Node_CreateCastStmt,
		*pg_query.Node_AlterTsdictionaryStmt, *pg_query.Node_AlterTsconfigurationStmt:
		s.ownerOnly(tag, "")
		return
	}
	if reason := refusedStmtReason(n); reason != "" {
		s.refuse(SQLStatePolicy, "%s is not allowed: %s", tag, reason)
		return
	}
	s.refuse(SQLStatePolicy, "%s is not supported by tenantproxy", tag)
}

// refusedStmtReason returns why a statement of n's kind is refused for every profile, or "".
func refusedStmtReason(n *pg_query.Node) string {
	switch n.Node.(type) {
	case *pg_query.Node_DoStmt:
		return "an anonymous code block runs SQL that tenantproxy cannot check"
	case *pg_query.Node_CreateSchemaStmt:
		return "each tenant has exactly its own schema"
	case *pg_query.Node_CreateRoleStmt, *pg_query.Node_AlterRoleStmt, *pg_query.Node_DropRoleStmt,
		*pg_query.Node_AlterRoleSetStmt, *pg_query.Node_GrantRoleStmt, *pg_query.Node_ReassignOwnedStmt,
		*pg_query.Node_DropOwnedStmt:
		return "roles are managed by tenantproxy"
	case *pg_query.Node_GrantStmt, *pg_query.Node_AlterDefaultPrivilegesStmt:
		return "privileges are managed by tenantproxy, since a grant could open a tenant's data to others"
	case *pg_query.Node_AlterSystemStmt:
		return "the server's configuration is shared by all tenants"
	case *pg_query.Node_CreatedbStmt, *pg_query.Node_DropdbStmt, *pg_query.Node_AlterDatabaseStmt,
		*pg_query.Node_AlterDatabaseSetStmt, *pg_query.Node_AlterDatabaseRefreshCollStmt:
		return "the database is shared by all tenants"
	case *pg_query.Node_CreateTableSpaceStmt, *pg_query.Node_DropTableSpaceStmt,
		*pg_query.Node_AlterTableSpaceOptionsStmt, *pg_query.Node_AlterTableMoveAllStmt:
		return "tablespaces are shared by all tenants"
	case *pg_query.Node_CreateExtensionStmt, *pg_query.Node_AlterExtensionStmt,
		*pg_query.Node_AlterExtensionContentsStmt:
		return "extensions are installed by the administrator for all tenants"
	case *pg_query.Node_LoadStmt:
		return "it loads code into a backend that other tenants share"
	case *pg_query.Node_CheckPointStmt:
		return "it is an operation of the whole server"
	case *pg_query.Node_SecLabelStmt:
		return "security labels are managed by the administrator"
	case *pg_query.Node_CreateEventTrigStmt, *pg_query.Node_AlterEventTrigStmt:
		return "event triggers fire for every tenant"
	case *pg_query.Node_CreatePlangStmt, *pg_query.Node_CreateAmStmt, *pg_query.Node_CreateTransformStmt:
		return "it is installed by the administrator for all tenants"
	case *pg_query.Node_CreateConversionStmt:
		return "encoding conversions apply to the connections of every tenant"
	case *pg_query.Node_CreateFdwStmt, *pg_query.Node_AlterFdwStmt, *pg_query.Node_CreateForeignServerStmt,
		*pg_query.Node_AlterForeignServerStmt, *pg_query.Node_CreateForeignTableStmt,
		*pg_query.Node_CreateUserMappingStmt, *pg_query.Node_AlterUserMappingStmt,
		*pg_query.Node_DropUserMappingStmt, *pg_query.Node_ImportForeignSchemaStmt:
		return "foreign data wrappers reach other servers and files"
	case *pg_query.Node_CreatePublicationStmt, *pg_query.Node_AlterPublicationStmt,
		*pg_query.Node_CreateSubscriptionStmt, *pg_query.Node_AlterSubscriptionStmt,
		*pg_query.Node_DropSubscriptionStmt:
		return "logical replication is managed by the administrator"
	}
	return ""
}

// refusedObjectTypes are the kinds of object no client may drop, rename, move or give away, and why.
var refusedObjectTypes = map[pg_query.ObjectType]string{
	pg_query.ObjectType_OBJECT_SCHEMA:                "each tenant has exactly its own schema",
	pg_query.ObjectType_OBJECT_DATABASE:              "the database is shared by all tenants",
	pg_query.ObjectType_OBJECT_ROLE:                  "roles are managed by tenantproxy",
	pg_query.ObjectType_OBJECT_TABLESPACE:            "tablespaces are shared by all tenants",
	pg_query.ObjectType_OBJECT_EXTENSION:             "extensions are installed by the administrator for all tenants",
	pg_query.ObjectType_OBJECT_EVENT_TRIGGER:         "event triggers fire for every tenant",
	pg_query.ObjectType_OBJECT_LANGUAGE:              "it is installed by the administrator for all tenants",
	pg_query.ObjectType_OBJECT_ACCESS_METHOD:         "it is installed by the administrator for all tenants",
	pg_query.ObjectType_OBJECT_TRANSFORM:             "it is installed by the administrator for all tenants",
	pg_query.ObjectType_OBJECT_CONVERSION:            "encoding conversions apply to the connections of every tenant",
	pg_query.ObjectType_OBJECT_FDW:                   "foreign data wrappers reach other servers and files",
	pg_query.ObjectType_OBJECT_FOREIGN_SERVER:        "foreign data wrappers reach other servers and files",
	pg_query.ObjectType_OBJECT_FOREIGN_TABLE:         "foreign data wrappers reach other servers and files",
	pg_query.ObjectType_OBJECT_USER_MAPPING:          "foreign data wrappers reach other servers and files",
	pg_query.ObjectType_OBJECT_PUBLICATION:           "logical replication is managed by the administrator",
	pg_query.ObjectType_OBJECT_PUBLICATION_NAMESPACE: "logical replication is managed by the administrator",
	pg_query.ObjectType_OBJECT_PUBLICATION_REL:       "logical replication is managed by the administrator",
	pg_query.ObjectType_OBJECT_SUBSCRIPTION:          "logical replication is managed by the administrator",
	pg_query.ObjectType_OBJECT_PARAMETER_ACL:         "privileges are managed by tenantproxy",
}

// objectStmt classifies a DDL statement on an existing object of type t.
func (s *stmtCtx) objectStmt(tag string, t pg_query.ObjectType) {
	if reason, ok := refusedObjectTypes[t]; ok {
		s.refuse(SQLStatePolicy, "%s is not allowed: %s", tag, reason)
		return
	}
	s.ownerOnly(tag, "")
}

// drop classifies DROP: temporary tables, views, sequences and indexes named with the schema pg_temp may be
// dropped by the app profile; everything else is DDL.
func (s *stmtCtx) drop(d *pg_query.DropStmt) {
	t := d.GetRemoveType()
	tag := "DROP " + objectTypeName(t)
	if reason, ok := refusedObjectTypes[t]; ok {
		s.refuse(SQLStatePolicy, "%s is not allowed: %s", tag, reason)
		return
	}
	switch t {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_SEQUENCE,
		pg_query.ObjectType_OBJECT_INDEX:
		temp := len(d.GetObjects()) > 0
		for _, o := range d.GetObjects() {
			if !isTempName(o.GetList().GetItems()) {
				temp = false
			}
		}
		if temp {
			s.need(levelWrite, tag)
			return
		}
		s.ownerOnly(tag, "schema changes need the owner profile; a temporary object may be dropped as pg_temp.<name>")
		return
	case pg_query.ObjectType_OBJECT_FUNCTION, pg_query.ObjectType_OBJECT_PROCEDURE, pg_query.ObjectType_OBJECT_ROUTINE:
		s.ownerOnly(tag, "only the owner profile may drop functions and procedures")
		return
	}
	s.ownerOnly(tag, "")
}

// into classifies the target of SELECT INTO and CREATE TABLE AS.
func (s *stmtCtx) into(into *pg_query.IntoClause, tag string, t pg_query.ObjectType) {
	rel := into.GetRel()
	if t != pg_query.ObjectType_OBJECT_MATVIEW && isTempRelation(rel) {
		s.need(levelWrite, tag)
		s.effect(Effect{Kind: EffectTempTable, Name: rel.GetRelname(),
			Transient: into.GetOnCommit() == pg_query.OnCommitAction_ONCOMMIT_DROP})
		return
	}
	s.ownerOnly(tag, "it creates a table, and schema changes need the owner profile; use a temporary table")
}

// vacuum classifies VACUUM and ANALYZE: VACUUM FULL rewrites tables, which needs the owner profile.
func (s *stmtCtx) vacuum(v *pg_query.VacuumStmt) {
	if !v.GetIsVacuumcmd() {
		s.need(levelWrite, "ANALYZE")
		return
	}
	for _, o := range v.GetOptions() {
		if d := o.GetDefElem(); d != nil && strings.EqualFold(d.GetDefname(), "full") && defBool(d.GetArg(), true) {
			s.ownerOnly("VACUUM FULL", "it rewrites tables, which needs the owner profile")
			return
		}
	}
	s.need(levelWrite, "VACUUM")
}

// copy classifies COPY: only STDIN and STDOUT, never a server file or program.
func (s *stmtCtx) copy(c *pg_query.CopyStmt) {
	switch {
	case c.GetIsProgram():
		s.refuse(SQLStatePolicy, "COPY ... PROGRAM is not allowed: it runs a program on the database server")
		return
	case c.GetFilename() != "":
		s.refuse(SQLStatePolicy, "COPY to or from a file is not allowed: the file would be on the database server; use COPY ... FROM STDIN or TO STDOUT")
		return
	}
	if q := c.GetQuery(); q != nil {
		s.need(levelRead, "COPY")
		s.stmt(q)
		return
	}
	if c.GetIsFrom() {
		s.need(levelWrite, "COPY FROM")
		return
	}
	s.need(levelRead, "COPY")
}

// transaction classifies transaction control.
func (s *stmtCtx) transaction(t *pg_query.TransactionStmt) {
	s.need(levelRead, "transaction control")
	switch t.GetKind() {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		s.info.tag = "BEGIN"
		s.transactionOptions(t.GetOptions(), "BEGIN READ WRITE")
		s.effect(Effect{Kind: EffectBegin})
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		s.effect(Effect{Kind: EffectCommit, Chain: t.GetChain()})
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		s.effect(Effect{Kind: EffectRollback, Chain: t.GetChain()})
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		s.effect(Effect{Kind: EffectSavepoint, Name: t.GetSavepointName()})
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		s.effect(Effect{Kind: EffectRelease, Name: t.GetSavepointName()})
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		s.effect(Effect{Kind: EffectRollbackTo, Name: t.GetSavepointName()})
	default:
		s.refuse(SQLStatePolicy, "two-phase commit is not allowed: a prepared transaction would outlive the client on a shared backend")
	}
}

// transactionOptions looks for READ WRITE among the options of BEGIN or SET TRANSACTION.
func (s *stmtCtx) transactionOptions(opts []*pg_query.Node, tag string) {
	for _, o := range opts {
		if d := o.GetDefElem(); d != nil && d.GetDefname() == "transaction_read_only" && !defBool(d.GetArg(), true) {
			s.info.readWrite = true
			s.info.tag = tag
		}
	}
}

// discard classifies DISCARD: ALL is emulated, TEMP drops the client's temporary objects, PLANS and
// SEQUENCES are harmless.
func (s *stmtCtx) discard(d *pg_query.DiscardStmt) {
	s.need(levelRead, "DISCARD")
	switch d.GetTarget() {
	case pg_query.DiscardMode_DISCARD_ALL:
		s.effect(Effect{Kind: EffectDiscardAll})
	case pg_query.DiscardMode_DISCARD_TEMP:
		s.effect(Effect{Kind: EffectDiscardTemp})
	case pg_query.DiscardMode_DISCARD_PLANS, pg_query.DiscardMode_DISCARD_SEQUENCES:
	default:
		s.refuse(SQLStatePolicy, "this form of DISCARD is not supported by tenantproxy")
	}
}

// createFunction classifies CREATE FUNCTION and CREATE PROCEDURE: owner profile only, never SECURITY
// DEFINER, never a SET clause that a client could not run itself, only LANGUAGE sql or plpgsql (spelled
// exactly so, as PostgreSQL looks languages up), with their bodies checked.
func (s *stmtCtx) createFunction(f *pg_query.CreateFunctionStmt) {
	tag := "CREATE FUNCTION"
	if f.GetIsProcedure() {
		tag = "CREATE PROCEDURE"
	}
	s.ownerOnly(tag, "only the owner profile may create functions and procedures")
	if isTempName(f.GetFuncname()) {
		s.effect(Effect{Kind: EffectTempTable, Name: lastName(f.GetFuncname())})
	}
	language, body, bodies := "", "", 0
	for _, o := range f.GetOptions() {
		d := o.GetDefElem()
		switch d.GetDefname() {
		case "language":
			language = d.GetArg().GetString_().GetSval()
		case "as":
			for _, item := range d.GetArg().GetList().GetItems() {
				body = item.GetString_().GetSval()
				bodies++
			}
		}
	}
	s.routineOptions(f.GetOptions(), tag)
	if s.depth >= maxBodyDepth {
		s.refuse(SQLStatePolicy, "%s is not allowed: its body creates functions nested too deeply to check", tag)
		return
	}
	switch {
	case bodies > 1 && (language == "plpgsql" || language == "sql" || language == ""):
		s.refuse(SQLStateSyntax, "%s is not allowed: a LANGUAGE %s function has one body", tag, language)
	case language == "plpgsql" && bodies == 1:
		s.plpgsqlBody(tag)
	case language == "plpgsql":
		s.refuse(SQLStateSyntax, "%s is not allowed: a LANGUAGE plpgsql function needs a body (AS '...')", tag)
	case language == "sql" || language == "":
		if bodies == 1 {
			s.bodyStatements(body, tag)
		}
	default:
		s.refuse(SQLStatePolicy, "%s ... LANGUAGE %s is not allowed: only LANGUAGE sql and plpgsql functions may be created", tag, language)
	}
}

// alterFunction classifies ALTER FUNCTION, PROCEDURE and ROUTINE.
func (s *stmtCtx) alterFunction(f *pg_query.AlterFunctionStmt) {
	tag := "ALTER " + objectTypeName(f.GetObjtype())
	s.ownerOnly(tag, "only the owner profile may change functions and procedures")
	s.routineOptions(f.GetActions(), tag)
}

// routineOptions checks the options of CREATE or ALTER FUNCTION: SECURITY DEFINER is refused, and each SET
// clause follows the rules of SET LOCAL.
func (s *stmtCtx) routineOptions(opts []*pg_query.Node, tag string) {
	for _, o := range opts {
		d := o.GetDefElem()
		switch d.GetDefname() {
		case "security":
			if defBool(d.GetArg(), true) {
				s.refuse(SQLStatePolicy, "%s ... SECURITY DEFINER is not allowed: it would run with its owner's rights for any caller", tag)
			}
		case "set":
			if v := d.GetArg().GetVariableSetStmt(); v != nil {
				s.variableSet(v, tag)
			}
		}
	}
}

// bodyStatements checks SQL text of a function body as if it were a message: any statement refused for
// the owner profile, and any statement that leaves state in the session, refuses the function. It reports
// whether the text passed.
func (s *stmtCtx) bodyStatements(text, tag string) bool {
	tree, err := parseSQL(text)
	if err != nil {
		s.refuse(SQLStateSyntax, "%s is not allowed: its body cannot be parsed: %s", tag, parseErrorMessage(err))
		return false
	}
	for _, raw := range tree.Stmts {
		sub := stmtCtx{g: s.g, idx: s.idx, text: stmtText(text, raw), depth: s.depth + 1}
		sub.top(raw.Stmt)
		if sub.ref != nil {
			s.refuse(sub.ref.sqlState, "%s is not allowed: its body is refused: %s", tag, strings.TrimPrefix(sub.ref.reason, "tenantproxy: "))
			return false
		}
		for _, e := range sub.effects {
			if e.Kind != EffectSetLocal && e.Kind != EffectNotify {
				s.refuse(SQLStatePolicy, "%s is not allowed: its body changes the state of the session (%s), which tenantproxy could not track", tag, e.Kind)
				return false
			}
		}
		s.info.schemas = append(s.info.schemas, sub.info.schemas...)
	}
	return true
}

// plpgsqlBody checks the body of a LANGUAGE plpgsql function with PL/pgSQL's own grammar: every SQL
// statement and expression in it is checked as bodyStatements checks SQL, and EXECUTE of a string
// (dynamic SQL, which only exists at run time) is refused.
func (s *stmtCtx) plpgsqlBody(tag string) {
	out, err := parsePlpgsql(s.text)
	if err != nil {
		s.refuse(SQLStateSyntax, "%s is not allowed: its PL/pgSQL body cannot be parsed: %s", tag, parseErrorMessage(err))
		return
	}
	var tree any
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		s.refuse(SQLStatePolicy, "%s is not allowed: its PL/pgSQL body could not be read", tag)
		return
	}
	var exprs []plpgsqlExpr
	if collectPlpgsql(tree, &exprs) {
		s.refuse(SQLStatePolicy, "%s is not allowed: its PL/pgSQL body runs SQL built at run time (EXECUTE), which tenantproxy cannot check", tag)
		return
	}
	for _, e := range exprs {
		text, ok := e.sql()
		if !ok {
			s.refuse(SQLStatePolicy, "%s is not allowed: its PL/pgSQL body has an expression tenantproxy cannot check: %s", tag, e.query)
			return
		}
		if !s.bodyStatements(text, tag) {
			return
		}
	}
}

// plpgsqlExpr is one SQL statement or expression of a PL/pgSQL body, with PostgreSQL's RawParseMode.
type plpgsqlExpr struct {
	query string
	mode  int
}

// Raw parse modes of PL/pgSQL expressions (PostgreSQL's RawParseMode).
const (
	rawParseDefault      = 0 // a whole statement
	rawParsePlpgsqlExpr  = 2 // an expression
	rawParsePlpgsqlAssn1 = 3 // "target := expression", target a name
	rawParsePlpgsqlAssn3 = 5 // "target := expression", target a name with two qualifiers
)

// sql returns the expression as SQL text that PostgreSQL's main grammar parses: statements as they are,
// expressions as SELECT expression, and assignments as SELECT target = expression, which keeps every
// function call of both sides.
func (e plpgsqlExpr) sql() (string, bool) {
	switch {
	case e.mode == rawParseDefault:
		return e.query, true
	case e.mode == rawParsePlpgsqlExpr:
		return "SELECT " + e.query, true
	case e.mode >= rawParsePlpgsqlAssn1 && e.mode <= rawParsePlpgsqlAssn3:
		if i := strings.Index(e.query, ":="); i >= 0 {
			return "SELECT " + e.query[:i] + "=" + e.query[i+2:], true
		}
		return "SELECT " + e.query, true
	}
	return "", false
}

// collectPlpgsql gathers the expressions of a PL/pgSQL parse tree (pg_query's JSON) in a stable order, and
// reports whether the tree contains dynamic SQL.
func collectPlpgsql(v any, out *[]plpgsqlExpr) (dynamic bool) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch k {
			case "PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors", "dynquery":
				dynamic = true
			case "PLpgSQL_expr":
				if e, ok := x[k].(map[string]any); ok {
					q, _ := e["query"].(string)
					mode, _ := e["parseMode"].(float64)
					*out = append(*out, plpgsqlExpr{query: q, mode: int(mode)})
				}
				continue
			}
			if collectPlpgsql(x[k], out) {
				dynamic = true
			}
		}
	case []any:
		for _, c := range x {
			if collectPlpgsql(c, out) {
				dynamic = true
			}
		}
	}
	return dynamic
}

// functionOptions refuses options that name a refused function, as in CREATE AGGREGATE (SFUNC = ...) or
// CREATE OPERATOR (FUNCTION = ...).
func (s *stmtCtx) functionOptions(opts []*pg_query.Node) {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.GetArg() == nil {
			continue
		}
		arg := d.GetArg()
		switch {
		case arg.GetTypeName() != nil:
			s.functionName(arg.GetTypeName().GetNames(), strings.ToUpper(d.GetDefname()))
		case arg.GetList() != nil:
			s.functionName(arg.GetList().GetItems(), strings.ToUpper(d.GetDefname()))
		case arg.GetObjectWithArgs() != nil:
			s.functionName(arg.GetObjectWithArgs().GetObjname(), strings.ToUpper(d.GetDefname()))
		}
	}
}

// isTempRelation reports whether rel is temporary: CREATE TEMP, or a name qualified with pg_temp.
func isTempRelation(rel *pg_query.RangeVar) bool {
	if rel == nil {
		return false
	}
	return rel.GetRelpersistence() == "t" || isTempSchema(rel.GetSchemaname())
}

// isTempName reports whether a qualified name (a list of String nodes) is in pg_temp.
func isTempName(names []*pg_query.Node) bool {
	return len(names) >= 2 && isTempSchema(names[len(names)-2].GetString_().GetSval())
}

// isTempSchema reports whether schema is the session's temporary schema, pg_temp or pg_temp_N.
func isTempSchema(schema string) bool {
	schema = strings.ToLower(schema)
	return schema == "pg_temp" || strings.HasPrefix(schema, "pg_temp_")
}

// lastName returns the last part of a qualified name.
func lastName(names []*pg_query.Node) string {
	if len(names) == 0 {
		return ""
	}
	return names[len(names)-1].GetString_().GetSval()
}

// defBool reads the boolean argument of an option as PostgreSQL's defGetBoolean does; an option without
// an argument is ifMissing.
func defBool(arg *pg_query.Node, ifMissing bool) bool {
	if arg == nil {
		return ifMissing
	}
	switch {
	case arg.GetBoolean() != nil:
		return arg.GetBoolean().GetBoolval()
	case arg.GetInteger() != nil:
		return arg.GetInteger().GetIval() != 0
	case arg.GetAConst() != nil:
		c := arg.GetAConst()
		switch {
		case c.GetIval() != nil:
			return c.GetIval().GetIval() != 0
		case c.GetBoolval() != nil:
			return c.GetBoolval().GetBoolval()
		case c.GetSval() != nil:
			v, ok := parseBool(c.GetSval().GetSval())
			return !ok || v
		}
	case arg.GetString_() != nil:
		v, ok := parseBool(arg.GetString_().GetSval())
		return !ok || v
	}
	return ifMissing
}

// objectTypeName names an object type as SQL does, for example "TABLE" or "MATERIALIZED VIEW".
func objectTypeName(t pg_query.ObjectType) string {
	switch t {
	case pg_query.ObjectType_OBJECT_MATVIEW:
		return "MATERIALIZED VIEW"
	case pg_query.ObjectType_OBJECT_FDW:
		return "FOREIGN DATA WRAPPER"
	case pg_query.ObjectType_OBJECT_FOREIGN_SERVER:
		return "SERVER"
	case pg_query.ObjectType_OBJECT_STATISTIC_EXT:
		return "STATISTICS"
	case pg_query.ObjectType_OBJECT_TSCONFIGURATION:
		return "TEXT SEARCH CONFIGURATION"
	case pg_query.ObjectType_OBJECT_TSDICTIONARY:
		return "TEXT SEARCH DICTIONARY"
	case pg_query.ObjectType_OBJECT_TSPARSER:
		return "TEXT SEARCH PARSER"
	case pg_query.ObjectType_OBJECT_TSTEMPLATE:
		return "TEXT SEARCH TEMPLATE"
	case pg_query.ObjectType_OBJECT_OPCLASS:
		return "OPERATOR CLASS"
	case pg_query.ObjectType_OBJECT_OPFAMILY:
		return "OPERATOR FAMILY"
	case pg_query.ObjectType_OBJECT_TABCONSTRAINT:
		return "TABLE CONSTRAINT"
	case pg_query.ObjectType_OBJECT_DOMCONSTRAINT:
		return "DOMAIN CONSTRAINT"
	case pg_query.ObjectType_OBJECT_LARGEOBJECT:
		return "LARGE OBJECT"
	}
	return strings.ReplaceAll(strings.TrimPrefix(t.String(), "OBJECT_"), "_", " ")
}

// stmtTags are the SQL names of statement kinds whose protobuf name does not spell them.
var stmtTags = map[string]string{
	"CreateTrigStmt": "CREATE TRIGGER", "CreateStatsStmt": "CREATE STATISTICS", "AlterStatsStmt": "ALTER STATISTICS",
	"CreatePlangStmt": "CREATE LANGUAGE", "CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE",
	"CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER", "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
	"CreateForeignServerStmt": "CREATE SERVER", "AlterForeignServerStmt": "ALTER SERVER",
	"CreateAmStmt": "CREATE ACCESS METHOD", "RuleStmt": "CREATE RULE", "CreateOpClassStmt": "CREATE OPERATOR CLASS",
	"CreateOpFamilyStmt": "CREATE OPERATOR FAMILY", "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY",
	"AlterTsdictionaryStmt": "ALTER TEXT SEARCH DICTIONARY", "AlterTsconfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
	"CreateEventTrigStmt": "CREATE EVENT TRIGGER", "AlterEventTrigStmt": "ALTER EVENT TRIGGER",
	"CheckPointStmt": "CHECKPOINT", "DoStmt": "DO", "SecLabelStmt": "SECURITY LABEL",
	"AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES", "ReassignOwnedStmt": "REASSIGN OWNED",
	"DropOwnedStmt": "DROP OWNED", "AlterTableMoveAllStmt": "ALTER TABLE ALL IN TABLESPACE",
	"CreateTableSpaceStmt": "CREATE TABLESPACE", "DropTableSpaceStmt": "DROP TABLESPACE",
	"AlterTableSpaceOptionsStmt": "ALTER TABLESPACE", "AlterExtensionContentsStmt": "ALTER EXTENSION",
	"AlterDatabaseRefreshCollStmt": "ALTER DATABASE REFRESH COLLATION VERSION", "AlterRoleSetStmt": "ALTER ROLE ... SET",
	"AlterDatabaseSetStmt": "ALTER DATABASE ... SET", "CreateConversionStmt": "CREATE CONVERSION",
	"CreateCastStmt": "CREATE CAST", "CreateTransformStmt": "CREATE TRANSFORM", "LoadStmt": "LOAD",
	"ClusterStmt": "CLUSTER", "ReindexStmt": "REINDEX", "AlterSeqStmt": "ALTER SEQUENCE",
	"CreateDomainStmt": "CREATE DOMAIN", "AlterDomainStmt": "ALTER DOMAIN", "AlterCollationStmt": "ALTER COLLATION",
	"CreatePolicyStmt": "CREATE POLICY", "AlterPolicyStmt": "ALTER POLICY", "AlterSystemStmt": "ALTER SYSTEM",
	"CreateSchemaStmt": "CREATE SCHEMA", "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA",
	"CreateForeignTableStmt": "CREATE FOREIGN TABLE",
}

// tagOf names the statement kind of n for messages, for example "CREATE EXTENSION".
func tagOf(n *pg_query.Node) string {
	switch x := n.Node.(type) {
	case *pg_query.Node_GrantStmt:
		if x.GrantStmt.GetIsGrant() {
			return "GRANT"
		}
		return "REVOKE"
	case *pg_query.Node_GrantRoleStmt:
		if x.GrantRoleStmt.GetIsGrant() {
			return "GRANT of a role"
		}
		return "REVOKE of a role"
	}
	name := string(n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().Get(0)).Message().Name())
	if tag, ok := stmtTags[name]; ok {
		return tag
	}
	name = strings.TrimSuffix(name, "Stmt")
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// constText returns the text of a constant as PostgreSQL passes it to a setting: string constants as
// they are, numbers as written, booleans as true or false.
func constText(c *pg_query.A_Const) (string, bool) {
	switch {
	case c == nil || c.GetIsnull():
		return "", false
	case c.GetSval() != nil:
		return c.GetSval().GetSval(), true
	case c.GetIval() != nil:
		return strconv.FormatInt(int64(c.GetIval().GetIval()), 10), true
	case c.GetFval() != nil:
		return c.GetFval().GetFval(), true
	case c.GetBoolval() != nil:
		return strconv.FormatBool(c.GetBoolval().GetBoolval()), true
	}
	return "", false
}

package policy

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Statements that would be refused by the general rules, yet are harmless in exactly one form, which
// clients send as they would to PostgreSQL (issue 15): the guard recognises that form by its parse tree,
// so no spelling, comment or schema qualification gets anything else through.

// harmless classifies n when it is one of those forms, and reports whether it was.
func (s *stmtCtx) harmless(n *pg_query.Node) bool {
	switch {
	case isSelfTerminate(n):
		// SELECT pg_terminate_backend(pg_backend_pid()): the client ends its own session. The relay
		// answers it as PostgreSQL does (FATAL 57P01) and closes the backend, which no one else gets.
		s.need(levelRead, "SELECT")
		s.effect(Effect{Kind: EffectTerminateSelf, Name: "pg_terminate_backend"})
		return true
	case isCreateExtensionIfNotExists(n):
		// CREATE EXTENSION IF NOT EXISTS name, without SCHEMA, VERSION or CASCADE: when the extension is
		// installed, the server answers NOTICE "already exists, skipping" before it checks anything else;
		// when it is not, the server refuses it, since tenant roles have no CREATE on the database and
		// are not superusers (layer 1, SECURITY.md). It passes through for the server to answer.
		s.need(levelRead, "CREATE EXTENSION")
		return true
	}
	return false
}

// isCreateExtensionIfNotExists reports whether n is CREATE EXTENSION IF NOT EXISTS name with no option.
func isCreateExtensionIfNotExists(n *pg_query.Node) bool {
	x := n.GetCreateExtensionStmt()
	return x != nil && x.GetIfNotExists() && x.GetExtname() != "" && len(x.GetOptions()) == 0
}

// selfTerminateTemplate is the parse tree of SELECT pg_terminate_backend(pg_backend_pid()), without
// locations and schema qualifications.
var selfTerminateTemplate = func() *pg_query.SelectStmt {
	tree, err := parseSQL("SELECT pg_terminate_backend(pg_backend_pid())")
	if err != nil {
		panic(err)
	}
	sel := tree.GetStmts()[0].GetStmt().GetSelectStmt()
	canonicalSelect(sel)
	return sel
}()

// isSelfTerminate reports whether n is SELECT pg_terminate_backend(pg_backend_pid()), the functions
// optionally qualified with pg_catalog and the column optionally named, and nothing else.
func isSelfTerminate(n *pg_query.Node) bool {
	sel := n.GetSelectStmt()
	if sel == nil || len(sel.GetTargetList()) != 1 {
		return false
	}
	// Cheap first: only a call of pg_terminate_backend is worth comparing in full (every other
	// single-column SELECT passes here without an allocation).
	names := sel.GetTargetList()[0].GetResTarget().GetVal().GetFuncCall().GetFuncname()
	if len(names) == 0 || names[len(names)-1].GetString_().GetSval() != "pg_terminate_backend" {
		return false
	}
	c := proto.Clone(sel).(*pg_query.SelectStmt)
	canonicalSelect(c)
	return proto.Equal(c, selfTerminateTemplate)
}

// canonicalSelect strips what may differ between spellings of the same call: locations, the column's
// name and the pg_catalog qualification of function names.
func canonicalSelect(sel *pg_query.SelectStmt) {
	clearLocations(sel.ProtoReflect())
	for _, t := range sel.GetTargetList() {
		if rt := t.GetResTarget(); rt != nil {
			rt.Name = ""
			unqualify(rt.GetVal())
		}
	}
}

// unqualify drops a leading pg_catalog from the name of the function call n and of its arguments' calls.
func unqualify(n *pg_query.Node) {
	fc := n.GetFuncCall()
	if fc == nil {
		return
	}
	if names := fc.GetFuncname(); len(names) == 2 && names[0].GetString_().GetSval() == "pg_catalog" {
		fc.Funcname = names[1:]
	}
	for _, a := range fc.GetArgs() {
		unqualify(a)
	}
}

// clearLocations zeroes every field named location in m and the messages under it.
func clearLocations(m protoreflect.Message) {
	var clear []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "location":
			clear = append(clear, fd)
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearLocations(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			clearLocations(v.Message())
		}
		return true
	})
	for _, fd := range clear {
		m.Clear(fd)
	}
}

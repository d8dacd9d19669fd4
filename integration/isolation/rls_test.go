package isolation

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// rlsCases attack the shared table public.notes, whose policy trusts the tenant setting: the setting
// never changes, and every read and write through the policy stays within acme's notes.
func rlsCases() []escape {
	return []escape{
		{name: "read sees only the own notes", steps: []step{okRows("SELECT tenant, count(*) FROM public.notes GROUP BY tenant", "acme|3")}},
		{name: "TABLE and ONLY", steps: []step{ok("TABLE public.notes"), okRows("SELECT DISTINCT tenant FROM ONLY public.notes", "acme")}},
		{name: "a filter for globex finds nothing", steps: []step{okRows("SELECT count(*) FROM public.notes WHERE tenant = 'globex'", "0")}},
		{name: "a failing cast reveals only the own notes", steps: []step{fails("22P02", "SELECT * FROM public.notes WHERE body::int > 0", "invalid input syntax")}},
		{name: "a failing cast on globex's notes", steps: []step{okRows("SELECT count(*) FROM public.notes WHERE tenant = 'globex' AND body::int > 0", "0")}},
		{name: "SET tenant setting then read", steps: []step{refused("SET tenantproxy.tenant = 'globex'; SELECT * FROM public.notes")}},
		{name: "set_config of the tenant setting in the query", steps: []step{refused("SELECT set_config('tenantproxy.tenant', 'globex', false), * FROM public.notes", "set_config")}},
		{name: "SET LOCAL tenant setting", steps: []step{refused("BEGIN; SET LOCAL tenantproxy.tenant TO 'globex'; SELECT * FROM public.notes; COMMIT")}},
		{name: "row_security off", steps: []step{fails("42501", "SET row_security = off; SELECT * FROM public.notes")}},
		{name: "UPDATE of globex's notes changes nothing", steps: []step{okRows("UPDATE public.notes SET body = 'pwned' WHERE tenant = 'globex' RETURNING body", "")}},
		{name: "DELETE of other notes deletes nothing", steps: []step{okRows("DELETE FROM public.notes WHERE tenant <> 'acme' RETURNING body", "")}},
		{name: "INSERT of a note for globex", steps: []step{fails("42501", "INSERT INTO public.notes (tenant, body) VALUES ('globex', 'forged')", "row-level security")}},
		{name: "UPDATE moving the own notes to globex", steps: []step{fails("42501", "UPDATE public.notes SET tenant = 'globex'", "row-level security")}},
		// The notes were written acme's first: ids 4 to 6 are globex's.
		{name: "upsert over a globex note", steps: []step{fails("42501", "INSERT INTO public.notes (id, body) VALUES (4, 'x') ON CONFLICT (id) DO UPDATE SET body = 'pwned'", "row-level security")}},
		{name: "upsert doing nothing over a globex note", steps: []step{okRows("INSERT INTO public.notes (id, body) VALUES (5, 'x') ON CONFLICT (id) DO NOTHING RETURNING tenant", "")}},
		{name: "an own note takes the tenant from the setting", steps: []step{
			okRows("INSERT INTO public.notes (body) VALUES ('acme own note') RETURNING tenant", "acme"),
			okRows("DELETE FROM public.notes WHERE body = 'acme own note' RETURNING tenant", "acme"),
		}},
		{name: "ALTER TABLE DISABLE ROW LEVEL SECURITY", steps: []step{refused("ALTER TABLE public.notes DISABLE ROW LEVEL SECURITY")}},
		{name: "ALTER TABLE NO FORCE ROW LEVEL SECURITY", steps: []step{refused("ALTER TABLE public.notes NO FORCE ROW LEVEL SECURITY")}},
		{name: "DROP POLICY", steps: []step{refused("DROP POLICY tenant_isolation ON public.notes")}},
		{name: "CTE and subquery", steps: []step{okRows("WITH n AS (SELECT * FROM public.notes) SELECT DISTINCT tenant FROM (SELECT * FROM n) s", "acme")}},
		{name: "EXPLAIN ANALYZE", steps: []step{ok("EXPLAIN ANALYZE SELECT * FROM public.notes")}},
		{name: "pg_stats of the RLS table", steps: []step{okRows("SELECT attname, most_common_vals::text FROM pg_stats WHERE tablename = 'notes'", "")}},
		{name: "a duplicate key names only the key", steps: []step{fails("23505", "INSERT INTO public.notes (id, body) VALUES (4, 'x')", "duplicate key")}},
		{name: "read-only user reads only the own notes", user: "reader", steps: []step{okRows("SELECT DISTINCT tenant FROM public.notes", "acme")}},
	}
}

// The shared table under row-level security shows and changes only the tenant's rows: the tenant setting
// the policy trusts can never be changed by the client.
func TestSharedRLSTable(t *testing.T) {
	runCategory(t, rlsCases(), nil)
}

// COPY of the shared RLS table goes through the policy too: COPY TO shows only the tenant's notes, and
// COPY FROM of a note for another tenant never lands.
func TestSharedRLSTableCopy(t *testing.T) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			ctx := testContext(t, 30*time.Second)
			c := connect(t, ctx, p.TenantURL(attacker))
			for _, sql := range []string{"COPY public.notes TO STDOUT", "COPY (SELECT * FROM public.notes) TO STDOUT", "COPY public.notes (tenant, body) TO STDOUT WITH (FORMAT csv)"} {
				var out bytes.Buffer
				if _, err := c.CopyTo(ctx, &out, sql); err != nil {
					t.Errorf("%s: %v", sql, err)
					continue
				}
				if n := strings.Count(out.String(), "acme secret note"); n != notesPerTenant {
					t.Errorf("%s: want %d acme notes, got %q", sql, notesPerTenant, out.String())
				}
				for _, v := range victims {
					if strings.Contains(out.String(), v) {
						t.Errorf("LEAK: %s shows %s's notes: %q", sql, v, out.String())
					}
				}
			}
			for _, sql := range []string{"COPY globex.employees TO STDOUT", "COPY (SELECT * FROM globex.employees) TO STDOUT"} {
				var out bytes.Buffer
				_, err := c.CopyTo(ctx, &out, sql)
				expect(t, sql, outcome{err: err}, "42501", "permission denied")
				if out.Len() > 0 {
					t.Errorf("LEAK: %s wrote %q", sql, out.String())
				}
			}
			_, err := c.CopyFrom(ctx, strings.NewReader("globex\tforged by acme\n"), "COPY public.notes (tenant, body) FROM STDIN")
			if err == nil {
				t.Errorf("LEAK: COPY FROM wrote a note for globex")
			}
			_, err = c.CopyFrom(ctx, strings.NewReader("x\tforged by acme\tglobex\n"), "COPY globex.employees (name, email, tenant) FROM STDIN")
			expect(t, "COPY into globex.employees", outcome{err: err}, "42501", "permission denied")
			if st, err := probe(ctx, c); err != nil {
				t.Errorf("probe after COPY: %v", err)
			} else {
				checkTenant(t, "acme after COPY", st, attacker)
			}
			c.Close(ctx)
			probeTenant(t, ctx, p, "globex", "after COPY")
			checkVictimsUnchanged(t, ctx, "after COPY")
		})
	}
}

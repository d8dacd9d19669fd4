// Package isolation is the hostile-SQL isolation suite of tenantproxy: every escape of
// /work/shared/corpus/escapes.md (role and session authorization, settings through functions, code that
// runs later, search_path and the tenant setting, state left for the next tenant, protocol, identity) in
// variants of its own, run as a client bound to tenant acme through the real proxy over a server that
// `tenantproxy init` hardened, in both pool modes, with pools of one and two backends shared by every
// tenant. Each case asserts that the client never sees or changes another tenant's row, statement or
// notification, that the proxy stays up, that the next lease of the same backend runs in the right
// tenant's context, and that refusals carry the documented SQLSTATE and a reason. A randomized test mixes
// allowed and hostile statements of several tenants over one or two backends.
package isolation

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// fx is the provisioned cluster shared by the package: tenants acme, globex and initech (users alice, bob
// and carol), five employees each, and the shared RLS table public.notes with notes of every tenant.
var fx *proxytest.Fixture

// attacker is the tenant of the hostile client; victims are the others.
const attacker = "acme"

// victims are the tenants whose data the attacker must never reach.
var victims = []string{"globex", "initech"}

// allTenants are the fixture's tenants.
var allTenants = append([]string{attacker}, victims...)

// notesPerTenant is how many notes each tenant owns in public.notes.
const notesPerTenant = 3

// baseline is the superuser's view of every victim row (employees and notes), taken once the fixture is
// ready; no case may change it.
var baseline string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests provisions the fixture, runs the tests, stops the cluster and checks that no goroutine
// outlived its test.
func runTests(m *testing.M) int {
	f, err := proxytest.StartFixture(allTenants...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "isolation: start the fixture: %v\n", err)
		return 1
	}
	fx = f
	if err := setupNotes(f); err != nil {
		f.Cluster.Stop()
		fmt.Fprintf(os.Stderr, "isolation: shared RLS table: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	baseline, err = victimSnapshot(ctx)
	cancel()
	if err != nil {
		f.Cluster.Stop()
		fmt.Fprintf(os.Stderr, "isolation: baseline: %v\n", err)
		return 1
	}
	code := m.Run()
	f.Cluster.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "isolation: leaked goroutines: %v\n", err)
			return 1
		}
	}
	return code
}

// setupNotes creates the shared table public.notes as the superuser, puts it under the tenant_isolation
// policy with `tenantproxy rls enable public.notes` (ENABLE and FORCE ROW LEVEL SECURITY, USING and WITH
// CHECK tenant = current_setting(tenant setting), DML granted to every tenant role), and writes each
// tenant's notes.
func setupNotes(f *proxytest.Fixture) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.Cluster.Exec(ctx, proxytest.Database, `CREATE TABLE public.notes (
	id     serial PRIMARY KEY,
	tenant text NOT NULL DEFAULT current_setting('`+f.Base.Tenancy.Setting+`', true),
	body   text NOT NULL)`); err != nil {
		return err
	}
	var out bytes.Buffer
	if code := tenants.Main(ctx, f.Base, []string{"rls", "enable", "public.notes"}, &out, &out); code != 0 {
		return fmt.Errorf("tenantproxy rls enable public.notes: exit %d\n%s", code, out.String())
	}
	var seed bytes.Buffer
	for _, t := range f.Tenants {
		for i := 1; i <= notesPerTenant; i++ {
			fmt.Fprintf(&seed, "INSERT INTO public.notes (tenant, body) VALUES ('%s', '%s secret note %d');\n", t, t, i)
		}
	}
	// Statistics of every table, as autovacuum would gather them: the most common values of the notes
	// are other tenants' bodies, which pg_stats must not show.
	seed.WriteString("ANALYZE;\n")
	return f.Cluster.Exec(ctx, proxytest.Database, seed.String())
}

// victimSnapshot returns, as the superuser, every row of the victims' employees and of their notes.
func victimSnapshot(ctx context.Context) (string, error) {
	conn, err := fx.Cluster.Connect(ctx, proxytest.Database)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var b bytes.Buffer
	for _, v := range victims {
		rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT format('%%s|%%s|%%s|%%s', id, name, email, tenant) FROM %s.employees ORDER BY id`, v))
		if err != nil {
			return "", err
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return "", err
			}
			b.WriteString(s + "\n")
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return "", err
		}
	}
	rows, err := conn.Query(ctx, `SELECT format('%s|%s|%s', id, tenant, body) FROM public.notes WHERE tenant <> $1 ORDER BY id`, attacker)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "", err
		}
		b.WriteString(s + "\n")
	}
	return b.String(), rows.Err()
}

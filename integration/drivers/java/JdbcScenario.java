import java.io.StringReader;
import java.io.StringWriter;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

/**
 * JdbcScenario is the driver matrix scenario for the PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java)
 * with server-side prepared statements from the first execution (prepareThreshold=1). Transactions are JDBC's
 * own: autocommit off, commit() and rollback(). It reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B and
 * TP_MODE (see integration/drivers/doc.go), exits 1 with a message on the first failed check and prints
 * "ok jdbc" at the end.
 */
public final class JdbcScenario {
    private static final String DRIVER = "jdbc";

    private static final String INSERT = "INSERT INTO employees (name, email) VALUES (?, ?) RETURNING id, tenant";
    private static final String SELECT = "SELECT name, email, tenant FROM employees WHERE id = ?";
    private static final String UPDATE = "UPDATE employees SET email = ? WHERE id = ?";
    private static final String DELETE = "DELETE FROM employees WHERE id = ?";
    private static final String TENANTS = "SELECT DISTINCT tenant FROM employees ORDER BY tenant";
    private static final String FOREIGN = "SELECT count(*) FROM employees WHERE tenant <> ?";
    private static final String COUNT_LIKE = "SELECT count(*) FROM employees WHERE name LIKE ?";
    private static final String DELETE_LIKE = "DELETE FROM employees WHERE name LIKE ?";

    /** Failure is a failed check of the scenario. */
    private static final class Failure extends RuntimeException {
        Failure(String msg) {
            super(msg);
        }
    }

    private static void check(boolean cond, String msg) {
        if (!cond) {
            throw new Failure(msg);
        }
    }

    private static String env(String key, String def) {
        String v = System.getenv(key);
        if (v == null || v.isEmpty()) {
            v = def;
        }
        if (v == null) {
            throw new Failure("environment variable " + key + " is not set");
        }
        return v;
    }

    private static String decode(String s) {
        return URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8);
    }

    /**
     * Connects with a libpq-style URL (postgresql://user:password@host:port/db?sslmode=...), converted to
     * jdbc:postgresql://host:port/db?prepareThreshold=1&sslmode=... with the user and password as properties.
     */
    static Connection connect(String dsn) throws Exception {
        URI u = new URI(dsn);
        Properties props = new Properties();
        String info = u.getRawUserInfo();
        if (info != null) {
            int colon = info.indexOf(':');
            props.setProperty("user", decode(colon < 0 ? info : info.substring(0, colon)));
            if (colon >= 0) {
                props.setProperty("password", decode(info.substring(colon + 1)));
            }
        }
        StringBuilder url = new StringBuilder("jdbc:postgresql://").append(u.getHost());
        if (u.getPort() > 0) {
            url.append(':').append(u.getPort());
        }
        url.append(u.getRawPath()).append("?prepareThreshold=1");
        if (u.getRawQuery() != null) {
            url.append('&').append(u.getRawQuery());
        }
        Connection c = DriverManager.getConnection(url.toString(), props);
        c.setAutoCommit(false);
        return c;
    }

    /** Client is one tenant's connection with the scenario's prepared statements. */
    static final class Client implements AutoCloseable {
        final String tenant;
        final Connection conn;
        final PreparedStatement ins;
        final PreparedStatement sel;
        final PreparedStatement upd;
        final PreparedStatement del;
        final PreparedStatement foreign;
        final PreparedStatement countLike;

        Client(String dsn, String tenant) throws Exception {
            this.tenant = tenant;
            conn = connect(dsn);
            ins = conn.prepareStatement(INSERT);
            sel = conn.prepareStatement(SELECT);
            upd = conn.prepareStatement(UPDATE);
            del = conn.prepareStatement(DELETE);
            foreign = conn.prepareStatement(FOREIGN);
            countLike = conn.prepareStatement(COUNT_LIKE);
        }

        long count(PreparedStatement ps, String arg) throws SQLException {
            ps.setString(1, arg);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }

        void assertOwnTenant() throws SQLException {
            List<String> seen = new ArrayList<>();
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery(TENANTS)) {
                while (rs.next()) {
                    seen.add(rs.getString(1));
                }
            }
            check(seen.equals(List.of(tenant)), "tenant " + tenant + " sees rows of tenants " + seen + ", want only its own");
            check(count(foreign, tenant) == 0, "tenant " + tenant + " counts rows of other tenants");
        }

        String[] select(int id) throws SQLException {
            sel.setInt(1, id);
            try (ResultSet rs = sel.executeQuery()) {
                if (!rs.next()) {
                    return null;
                }
                return new String[] {rs.getString(1), rs.getString(2), rs.getString(3)};
            }
        }

        int createReadUpdate(String name) throws SQLException {
            String email = name + "@example.com";
            ins.setString(1, name);
            ins.setString(2, email);
            int id;
            try (ResultSet rs = ins.executeQuery()) {
                check(rs.next(), "insert " + name + " returned no row");
                id = rs.getInt(1);
                check(tenant.equals(rs.getString(2)), "insert " + name + ": got tenant " + rs.getString(2));
            }
            String[] got = select(id);
            check(got != null && got[0].equals(name) && got[1].equals(email) && got[2].equals(tenant),
                    "select id " + id + ": got " + (got == null ? "no row" : String.join(",", got)));
            upd.setString(1, "new-" + email);
            upd.setInt(2, id);
            check(upd.executeUpdate() == 1, "update id " + id + " did not update one row");
            got = select(id);
            check(got != null && got[1].equals("new-" + email), "select id " + id + " after update");
            return id;
        }

        void delete(int id) throws SQLException {
            del.setInt(1, id);
            check(del.executeUpdate() == 1, "delete id " + id + " did not delete one row");
        }

        /** Removes the rows marked by this run, also after a failure, and closes the connection. */
        void cleanup(String mark) {
            try {
                conn.rollback();
                try (PreparedStatement ps = conn.prepareStatement(DELETE_LIKE)) {
                    ps.setString(1, mark + "%");
                    ps.executeUpdate();
                }
                conn.commit();
            } catch (SQLException e) {
                // The connection may be broken by the failure being reported.
            }
        }

        @Override
        public void close() throws SQLException {
            conn.close();
        }
    }

    static void scenario(Client a, Client b, String markA, String markB) throws Exception {
        a.assertOwnTenant();
        b.assertOwnTenant();
        a.conn.commit();
        b.conn.commit();

        // CRUD with prepared statements, reused across interleaved transactions of both tenants.
        List<Integer> idsA = new ArrayList<>();
        for (int round = 1; round <= 3; round++) {
            idsA.add(a.createReadUpdate(markA + round));
            a.assertOwnTenant();
            a.conn.commit();

            int idB = b.createReadUpdate(markB + round);
            check(b.count(b.countLike, markA + "%") == 0, "tenant " + b.tenant + " sees rows of " + a.tenant);
            b.delete(idB);
            b.assertOwnTenant();
            b.conn.commit();
        }
        check(a.count(a.countLike, markA + "%") == 3, "tenant A's three rows are not all there");
        a.conn.commit();
        for (int id : idsA) {
            a.delete(id);
        }
        a.conn.commit();
        check(a.count(a.countLike, markA + "%") == 0, "tenant A's rows survived their delete");
        a.conn.commit();

        // An error inside a transaction throws; rollback; the connection goes on.
        try (PreparedStatement div = a.conn.prepareStatement("SELECT 1 / ?::int")) {
            div.setInt(1, 0);
            div.executeQuery().close();
            throw new Failure("SELECT 1/0 did not throw");
        } catch (SQLException e) {
            check("22012".equals(e.getSQLState()), "SELECT 1/0: SQLSTATE " + e.getSQLState() + " (" + e.getMessage() + ")");
        }
        a.conn.rollback();
        a.assertOwnTenant();
        a.conn.commit();

        // A cancel with Statement.cancel() from another thread: SQLSTATE 57014 within 5 s, and the connection
        // goes on after rollback.
        try (Statement st = a.conn.createStatement()) {
            Thread canceller = new Thread(() -> {
                try {
                    Thread.sleep(300);
                    st.cancel();
                } catch (Exception e) {
                    System.err.println("cancel: " + e);
                }
            });
            long start = System.nanoTime();
            canceller.start();
            try {
                st.executeQuery("SELECT pg_sleep(10)").close();
                throw new Failure("pg_sleep(10) was not cancelled");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "cancel: SQLSTATE " + e.getSQLState() + " (" + e.getMessage() + ")");
            }
            canceller.join();
            double took = (System.nanoTime() - start) / 1e9;
            check(took < 5, "cancelled pg_sleep(10) returned after " + took + "s");
        }
        a.conn.rollback();
        a.assertOwnTenant();
        a.conn.commit();

        // COPY in and out with the driver's CopyManager.
        final int copied = 50;
        StringBuilder data = new StringBuilder();
        for (int i = 0; i < copied; i++) {
            data.append(markA).append("copy-").append(i).append('\t').append("copy").append(i).append("@example.com\n");
        }
        CopyManager copy = a.conn.unwrap(PGConnection.class).getCopyAPI();
        long n = copy.copyIn("COPY employees (name, email) FROM STDIN", new StringReader(data.toString()));
        check(n == copied, "COPY FROM STDIN: " + n + " rows, want " + copied);
        a.conn.commit();
        check(a.count(a.countLike, markA + "copy-%") == copied, "copied rows not all there");
        check(b.count(b.countLike, markA + "%") == 0, "tenant " + b.tenant + " sees rows copied by " + a.tenant);
        b.conn.commit();
        StringWriter out = new StringWriter();
        n = copy.copyOut("COPY (SELECT name, tenant FROM employees WHERE name LIKE '" + markA + "copy-%') TO STDOUT", out);
        String[] lines = out.toString().split("\n");
        check(n == copied && lines.length == copied, "COPY TO STDOUT: " + n + " rows, " + lines.length + " lines, want " + copied);
        for (String line : lines) {
            check(line.endsWith("\t" + a.tenant), "COPY TO STDOUT returned another tenant's row: " + line);
        }
        a.assertOwnTenant();
        try (PreparedStatement ps = a.conn.prepareStatement(DELETE_LIKE)) {
            ps.setString(1, markA + "%");
            check(ps.executeUpdate() == copied, "delete copied rows");
        }
        a.conn.commit();
    }

    public static void main(String[] args) {
        try {
            String tenantA = env("TP_TENANT_A", "acme");
            String tenantB = env("TP_TENANT_B", "globex");
            String run = "jdbc-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
            String markA = run + "-a-";
            String markB = run + "-b-";
            try (Client a = new Client(env("TP_DSN_A", null), tenantA);
                    Client b = new Client(env("TP_DSN_B", null), tenantB)) {
                System.out.println(DRIVER + " " + a.conn.getMetaData().getDriverVersion() + ", Java "
                        + System.getProperty("java.version") + ", mode " + env("TP_MODE", "?"));
                try {
                    scenario(a, b, markA, markB);
                } finally {
                    a.cleanup(markA);
                    b.cleanup(markB);
                }
            }
            System.out.println("ok " + DRIVER);
        } catch (Failure e) {
            System.err.println("FAIL " + DRIVER + ": " + e.getMessage());
            System.exit(1);
        } catch (SQLException e) {
            System.err.println("FAIL " + DRIVER + ": SQLSTATE " + e.getSQLState() + ": " + e);
            e.printStackTrace();
            System.exit(1);
        } catch (Exception e) {
            System.err.println("FAIL " + DRIVER + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
    }
}

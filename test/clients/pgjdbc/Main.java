// A Java service's view of a tenant database: pgjdbc with the tenant Secret's keys in its
// environment (as envFrom gives them), read the two ways apps do: jdbc-url with username and
// password (Spring's datasource, Service Binding readers), and pooled-jdbc-uri, one URL with the
// credentials, handed to DriverManager. Run as a single source file:
//   java -cp /usr/share/java/postgresql.jar Main.java
//
// pgjdbc prepares a statement on the server from its prepareThreshold-th execution (5 by default);
// prepareThreshold=1 is added to each URL (unless the URL sets its own) so that every statement is
// prepared from the first. pgjdbc names them S_1, S_2, ... per connection, and the two connections
// run the statements in opposite orders: through one server connection the same name meets
// different SQL.
//
// Prints {"total":...,"prepared":{"jdbc-url":...,"pooled-jdbc-uri":...}}: the sum of every result,
// and for each way how many of its 3 statements the server connection holds prepared (found by the
// marker in their text, new in every run, so that statements left there by an earlier run do not
// count), for the test to check.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.StringJoiner;
import java.util.UUID;

public class Main {
  static final int ROUNDS = 30;
  static final String RUN = UUID.randomUUID().toString();

  static String marker(String way) {
    return "/* tenantdb pgjdbc " + way + " " + RUN + " */";
  }

  interface Connect {
    Connection open() throws SQLException;
  }

  static String env(String key) {
    String v = System.getenv(key);
    if (v == null || v.isEmpty()) throw new IllegalStateException(key + " is not set");
    return v;
  }

  static String preparingFromFirst(String url) {
    if (url.contains("prepareThreshold=")) return url;
    return url + (url.contains("?") ? "&" : "?") + "prepareThreshold=1";
  }

  static long one(Connection conn, String sql, Object... params) throws SQLException {
    // A statement per execution, as JdbcTemplate and JPA use them: pgjdbc's statement cache
    // keeps the server-side one by its SQL.
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      for (int p = 0; p < params.length; p++) ps.setObject(p + 1, params[p]);
      try (ResultSet rs = ps.executeQuery()) {
        if (!rs.next()) throw new SQLException("no row from " + sql);
        return rs.getLong(1);
      }
    }
  }

  static long run(Connect connect, String marker, boolean reversed) throws SQLException {
    String dbl = "SELECT ?::int * 2 " + marker;
    String sum = "SELECT ?::int + ?::int " + marker;
    String length = "SELECT length(?::text) " + marker;
    long total = 0;
    try (Connection conn = connect.open()) {
      for (int i = 0; i < ROUNDS; i++) {
        if (reversed) {
          total += one(conn, sum, i, 1000) + one(conn, dbl, i);
        } else {
          total += one(conn, dbl, i) + one(conn, sum, i, 1000);
        }
        // A transaction holds the server connection until COMMIT in transaction pooling.
        conn.setAutoCommit(false);
        total += one(conn, dbl, (int) one(conn, length, "x".repeat(i)));
        conn.commit();
        conn.setAutoCommit(true);
      }
    }
    return total;
  }

  public static void main(String[] args) throws Exception {
    String url = preparingFromFirst(env("jdbc-url"));
    String user = env("username");
    String password = env("password");
    String pooledUri = preparingFromFirst(env("pooled-jdbc-uri"));
    Map<String, Connect> ways = new LinkedHashMap<>();
    ways.put("jdbc-url", () -> DriverManager.getConnection(url, user, password));
    ways.put("pooled-jdbc-uri", () -> DriverManager.getConnection(pooledUri));

    String[] names = ways.keySet().toArray(new String[0]);
    long[] totals = new long[names.length];
    Throwable[] errors = new Throwable[names.length];
    Thread[] threads = new Thread[names.length];
    for (int t = 0; t < names.length; t++) {
      final int n = t;
      threads[n] =
          new Thread(
              () -> {
                try {
                  totals[n] = run(ways.get(names[n]), marker(names[n]), n % 2 == 1);
                } catch (Throwable e) {
                  errors[n] = e;
                }
              });
      threads[n].start();
    }
    long total = 0;
    for (int t = 0; t < names.length; t++) {
      threads[t].join();
      if (errors[t] != null) {
        System.err.println(names[t] + ":");
        errors[t].printStackTrace();
        System.exit(1);
      }
      total += totals[t];
    }

    StringJoiner prepared = new StringJoiner(",", "{", "}");
    try (Connection conn = DriverManager.getConnection(url, user, password)) {
      for (String name : names) {
        long n =
            one(
                conn,
                "SELECT count(DISTINCT statement) FROM pg_prepared_statements WHERE strpos(statement, ?) > 0",
                marker(name));
        prepared.add("\"" + name + "\":" + n);
      }
    }
    System.out.println("{\"total\":" + total + ",\"prepared\":" + prepared + "}");
  }
}

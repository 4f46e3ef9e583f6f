// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against Glaux's PostgreSQL port.
//
// Usage: java -cp /usr/share/java/postgresql.jar PgJdbc.java PORT USER PASSWORD
//
// Prints what a JDBC application sees, one fact per line, for the system test to check:
//   table <schema>.<name> <type>              DatabaseMetaData.getTables
//   column <table>.<name> <type name> <java.sql.Types> <nullable>   DatabaseMetaData.getColumns
//   meta <label> <type name> <java.sql.Types> <class>                ResultSetMetaData
//   row <values separated by |>               query and PreparedStatement results
//   error <SQLState> <message>                a statement that failed (the connection stays usable)
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class PgJdbc {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/default";
        Properties props = new Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        // Use server-side prepared statements (Parse/Bind/Execute) from the first execution.
        props.setProperty("prepareThreshold", "1");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product " + meta.getDatabaseProductName() + " " + meta.getDatabaseProductVersion());

            try (ResultSet tables = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
                while (tables.next()) {
                    System.out.println("table " + tables.getString("TABLE_SCHEM") + "." + tables.getString("TABLE_NAME")
                        + " " + tables.getString("TABLE_TYPE"));
                }
            }
            for (String table : new String[] {"regions", "typed"}) {
                try (ResultSet columns = meta.getColumns(null, null, table, "%")) {
                    while (columns.next()) {
                        System.out.println("column " + table + "." + columns.getString("COLUMN_NAME") + " "
                            + columns.getString("TYPE_NAME") + " " + columns.getInt("DATA_TYPE") + " "
                            + columns.getString("IS_NULLABLE"));
                    }
                }
            }

            try (Statement statement = conn.createStatement()) {
                query(statement.executeQuery("SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY region"));
                query(statement.executeQuery("SELECT * FROM typed ORDER BY id"));
            }

            // A PreparedStatement with parameters, run twice with different values.
            try (PreparedStatement prepared = conn.prepareStatement(
                    "SELECT count(*) AS n, sum(qty) AS q FROM sales WHERE region = ? AND qty > ?")) {
                prepared.setString(1, "eu");
                prepared.setInt(2, 40);
                query(prepared.executeQuery());
                prepared.setString(1, "us");
                prepared.setInt(2, 10);
                query(prepared.executeQuery());
            }
            try (PreparedStatement prepared = conn.prepareStatement("SELECT id, price FROM typed WHERE day >= ? ORDER BY id")) {
                prepared.setDate(1, java.sql.Date.valueOf("2024-02-29"));
                query(prepared.executeQuery());
            }

            // Transactions as applications use them: autocommit off wraps statements in BEGIN.
            conn.setAutoCommit(false);
            try (Statement statement = conn.createStatement()) {
                query(statement.executeQuery("SELECT count(*) AS n FROM regions"));
            }
            conn.rollback();
            conn.setAutoCommit(true);

            // A bad statement is an error with a SQLState; the connection keeps working.
            try (Statement statement = conn.createStatement()) {
                statement.executeQuery("SELECT * FROM no_such_table");
                System.out.println("row unexpected success");
            } catch (SQLException e) {
                System.out.println("error " + e.getSQLState() + " " + e.getMessage().replace('\n', ' '));
            }
            try (Statement statement = conn.createStatement()) {
                query(statement.executeQuery("SELECT 40 + 2 AS answer"));
            }
        }
    }

    static void query(ResultSet rs) throws SQLException {
        try (rs) {
            ResultSetMetaData meta = rs.getMetaData();
            int n = meta.getColumnCount();
            for (int i = 1; i <= n; i++) {
                System.out.println("meta " + meta.getColumnLabel(i) + " " + meta.getColumnTypeName(i) + " "
                    + meta.getColumnType(i) + " " + meta.getColumnClassName(i));
            }
            while (rs.next()) {
                List<String> values = new ArrayList<>();
                for (int i = 1; i <= n; i++) {
                    Object value = rs.getObject(i);
                    if (value instanceof java.sql.Array array) {
                        value = "array" + java.util.Arrays.toString((Object[]) array.getArray());
                    }
                    values.add(rs.wasNull() ? "NULL" : String.valueOf(value));
                }
                System.out.println("row " + String.join("|", values));
            }
        }
    }
}

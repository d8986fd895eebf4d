//! One row, from either database, for the parsers the two share: a table
//! module reads its rows once (`read_row<R: SqlRow>`), and both SQLite and
//! PostgreSQL hand it theirs. Only the types both drivers convert the same way
//! are read through it: integers (`INTEGER` / `BIGINT`), text, booleans
//! (SQLite's 0/1, PostgreSQL's `boolean`), each optionally `NULL`.

/// A value both drivers read from a column.
pub(crate) trait Column:
    rusqlite::types::FromSql + for<'a> ::postgres::types::FromSql<'a>
{
}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'a> ::postgres::types::FromSql<'a> {}

/// A row of a result, by column index.
pub(crate) trait SqlRow {
    /// The driver's error: a column missing or of another type.
    type Error;

    /// The value of column `index` (0-based).
    fn get<T: Column>(&self, index: usize) -> Result<T, Self::Error>;
}

impl SqlRow for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn get<T: Column>(&self, index: usize) -> Result<T, rusqlite::Error> {
        rusqlite::Row::get(self, index)
    }
}

impl SqlRow for ::postgres::Row {
    type Error = ::postgres::Error;

    fn get<T: Column>(&self, index: usize) -> Result<T, ::postgres::Error> {
        self.try_get(index)
    }
}

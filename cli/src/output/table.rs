//! Minimal aligned-column and key/value layouts.
//!
//! Cells are sanitised because names, descriptions and NACK errors come from other
//! users or data planes: a stray newline would break alignment, and an escape sequence
//! could rewrite the user's terminal.

/// A table with a header row; columns are separated by two spaces.
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells render empty, extra cells are dropped.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with every column padded to its widest cell; no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let cols = self.headers.len();
        let cell = |row: &[String], i: usize| row.get(i).map(|c| clean(c)).unwrap_or_default();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let body: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| (0..cols).map(|i| cell(r, i)).collect())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &body {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&body) {
            let mut line = String::new();
            for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 < cols {
                    line.push_str(&format!("{c:<w$}  "));
                } else {
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders `key: value` lines with the values aligned, for single-resource views.
pub(crate) fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (k, v) in pairs {
        let key = format!("{k}:");
        out.push_str(format!("{key:<width$} {}", clean(v)).trim_end());
        out.push('\n');
    }
    out
}

/// `yes`/`no`, which reads better than `true`/`false` in a table.
pub(crate) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Empty strings render as `-` so columns never look shifted.
pub(crate) fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// Replaces control characters (newlines, tabs, ESC, ...) with their escaped form.
pub(crate) fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "URL"]);
        t.row(vec!["a".into(), "http://a".into()]);
        t.row(vec!["longer-name".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "NAME         URL\na            http://a\nlonger-name  -\n"
        );
    }

    #[test]
    fn empty_table_prints_only_headers() {
        assert_eq!(Table::new(&["ID", "NAME"]).render(), "ID  NAME\n");
    }

    #[test]
    fn short_rows_are_padded_and_trailing_blank_cells_trimmed() {
        let mut t = Table::new(&["A", "B", "C"]);
        t.row(vec!["x".into()]);
        assert_eq!(t.render(), "A  B  C\nx\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        let mut t = Table::new(&["ERR"]);
        t.row(vec!["line1\nline2".into()]);
        assert_eq!(t.render(), "ERR\nline1\\nline2\n");
    }

    #[test]
    fn key_values_align() {
        let text = key_values(&[("hostname", "a".into()), ("url", "http://b".into())]);
        assert_eq!(text, "hostname: a\nurl:      http://b\n");
    }
}

//! CSV for the audit export: RFC 4180 quoting, and a defence against formula injection (a cell
//! a spreadsheet would run as a formula is prefixed with a quote).

/// One CSV line (with CRLF, as RFC 4180 has it).
pub(crate) fn line<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = cells.into_iter().map(cell).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

fn cell(value: &str) -> String {
    // Spreadsheets treat these leading characters (and tab / CR) as the start of a formula.
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_needs_quoting() {
        assert_eq!(
            line(["a", "b,c", "say \"hi\"", "two\nlines"]),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
    }

    #[test]
    fn defuses_formulas() {
        assert_eq!(
            line(["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "ok"]),
            "\"'=HYPERLINK(\"\"x\"\")\",'+1,'-2,'@SUM(A1),ok\r\n"
        );
    }
}

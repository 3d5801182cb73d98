//! Writing CSV rows the way OneRoster files expect them: comma-separated, a field quoted only when it holds a
//! comma, a quote, a line break or spaces at its ends, quotes inside doubled.

/// Appends one row (and its line feed) to `out`.
pub fn push_row<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let quote = field.contains([',', '"', '\n', '\r'])
            || field.starts_with(' ')
            || field.ends_with(' ');
        if quote {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_fields_that_need_it_are_quoted() {
        let mut out = String::new();
        super::push_row(&mut out, ["a", "b,c", "say \"hi\"", " x", ""]);
        assert_eq!(out, "a,\"b,c\",\"say \"\"hi\"\"\",\" x\",\n");
    }
}

//! `--shard K/N`: which part of a run a report covers.

/// Parses `K/N` with `K < N`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let parsed = text
        .split_once('/')
        .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
    match parsed {
        Some((k, n)) if n > 0 && k < n => Ok((k, n)),
        _ => Err(format!(
            "invalid --shard `{text}`: expected K/N with 0 <= K < N, e.g. 0/4"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_shard("0/4"), Ok((0, 4)));
        assert_eq!(parse_shard("3/4"), Ok((3, 4)));
        for bad in ["3/2", "4/4", "1/0", "x/2", "1", "-1/2"] {
            let error = parse_shard(bad).unwrap_err();
            assert!(error.starts_with("invalid --shard"), "{error}");
        }
    }
}

//! "Did you mean" hints for names a user typed.

/// Returns `", did you mean `x`?"` for the closest candidate, or an empty string.
pub fn did_you_mean<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(typed, candidates)
        .map(|c| format!(", did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The candidate closest to `typed`, if any is close enough to be a plausible typo.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed_lower = typed.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&typed_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let names = ["minimal", "q35", "microvm"];
        assert_eq!(super::closest("minimla", names), Some("minimal"));
        assert_eq!(super::closest("zzz", names), None);
    }
}

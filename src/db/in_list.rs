//! `IN (…)` lists in a few lengths only. Each length is another SQL text, and a text
//! the connection has not prepared costs PostgreSQL a parse and a plan, and the driver
//! a round trip to prepare it (another to close the statement it pushes out of its
//! cache of 100). Worker batches of 1 to 64 sagas made up to 64 texts of every
//! statement, and about one statement in three was prepared anew (BENCHMARKS.md,
//! session 10). Padded to the next power of two with copies of its last value, a list
//! keeps its meaning (`IN` tests membership) and a statement has at most 7 texts up to
//! 64 values. Hibernate pads its lists for the same reason
//! (`in_clause_parameter_padding`).

/// `values`, with its last one repeated up to the next power of two of its length.
pub fn padded<T: Clone>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut values: Vec<T> = values.into_iter().collect();
    if let Some(last) = values.last().cloned() {
        values.resize(values.len().next_power_of_two(), last);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::padded;

    #[test]
    fn lists_are_padded_to_the_next_power_of_two_with_their_last_value() {
        assert_eq!(padded(Vec::<i64>::new()), Vec::<i64>::new());
        assert_eq!(padded([7]), [7]);
        assert_eq!(padded([1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded([1, 2, 3, 4]), [1, 2, 3, 4]);
        assert_eq!(padded(1..=5), [1, 2, 3, 4, 5, 5, 5, 5]);
        let lengths: std::collections::BTreeSet<usize> =
            (1..=64).map(|n| padded(0..n).len()).collect();
        assert_eq!(lengths.len(), 7);
    }
}

//! A time range cut into whole UTC days, which the daily aggregates answer, and the
//! partial days at its ends, which are read from the orders themselves.
use chrono::{DateTime, Days, NaiveTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySplit {
    /// Whole days `first <= day < last` (`None`: unbounded), or no whole day at all.
    pub days: Option<(Option<String>, Option<String>)>,
    /// Partial days `[from, to)`.
    pub edges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

fn midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_time(NaiveTime::MIN).and_utc()
}

fn next_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    let start = midnight(at);
    if start == at {
        at
    } else {
        start
            .checked_add_days(Days::new(1))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

pub fn split(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> DaySplit {
    let first = from.map(next_midnight);
    let last = to.map(midnight);
    if let (Some(from), Some(to), Some(first), Some(last)) = (from, to, first, last)
        && first >= last
    {
        return DaySplit {
            days: None,
            edges: if from < to { vec![(from, to)] } else { vec![] },
        };
    }
    let mut edges = Vec::new();
    if let (Some(from), Some(first)) = (from, first)
        && from < first
    {
        edges.push((from, first));
    }
    if let (Some(to), Some(last)) = (to, last)
        && last < to
    {
        edges.push((last, to));
    }
    DaySplit {
        days: Some((first.map(day), last.map(day))),
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, d, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn an_unbounded_range_is_every_whole_day() {
        assert_eq!(
            split(None, None),
            DaySplit {
                days: Some((None, None)),
                edges: vec![]
            }
        );
    }

    #[test]
    fn midnight_bounds_need_no_order_rows() {
        assert_eq!(
            split(Some(at(1, 0)), Some(at(3, 0))),
            DaySplit {
                days: Some((Some("2026-10-01".into()), Some("2026-10-03".into()))),
                edges: vec![]
            }
        );
    }

    #[test]
    fn partial_days_at_both_ends_are_read_from_orders() {
        assert_eq!(
            split(Some(at(1, 10)), Some(at(4, 6))),
            DaySplit {
                days: Some((Some("2026-10-02".into()), Some("2026-10-04".into()))),
                edges: vec![(at(1, 10), at(2, 0)), (at(4, 0), at(4, 6))]
            }
        );
        assert_eq!(
            split(None, Some(at(4, 6))),
            DaySplit {
                days: Some((None, Some("2026-10-04".into()))),
                edges: vec![(at(4, 0), at(4, 6))]
            }
        );
    }

    #[test]
    fn a_range_within_one_day_is_read_from_orders_only() {
        assert_eq!(
            split(Some(at(1, 10)), Some(at(1, 20))),
            DaySplit {
                days: None,
                edges: vec![(at(1, 10), at(1, 20))]
            }
        );
        assert_eq!(
            split(Some(at(1, 10)), Some(at(2, 0))),
            DaySplit {
                days: None,
                edges: vec![(at(1, 10), at(2, 0))]
            }
        );
    }
}

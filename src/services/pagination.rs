//! Relay cursor pagination: opaque cursors over a (sort key, id) pair, so pages stay
//! stable while rows are added.
use crate::error::{AppError, AppResult};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const MAX_PAGE_SIZE: i32 = 100;

/// A position in a sorted list: the sort key of the last row seen, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: String,
    pub id: i64,
}

impl Cursor {
    pub fn new(key: impl Into<String>, id: i64) -> Self {
        Self {
            key: key.into(),
            id,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1|{}|{}", self.id, self.key))
    }

    pub fn decode(raw: &str) -> AppResult<Self> {
        let invalid = || AppError::BadInput("after: not a valid cursor".into());
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(id), Some(key)) => Ok(Self {
                id: id.parse().map_err(|_| invalid())?,
                key: key.to_owned(),
            }),
            _ => Err(invalid()),
        }
    }

    pub fn key_as_i64(&self) -> AppResult<i64> {
        self.key
            .parse()
            .map_err(|_| AppError::BadInput("after: cursor does not match this sort order".into()))
    }
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn parse(first: i32, after: Option<&str>) -> AppResult<Self> {
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(AppError::BadInput(format!(
                "first must be between 0 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(Self {
            first: u64::try_from(first).unwrap_or_default(),
            after: after.map(Cursor::decode).transpose()?,
        })
    }
}

/// One page of rows with their cursors.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<(Cursor, T)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `first + 1` rows: the extra row only says there is more.
    pub fn from_rows(
        mut rows: Vec<T>,
        request: &PageRequest,
        cursor: impl Fn(&T) -> Cursor,
    ) -> Self {
        let limit = usize::try_from(request.first).unwrap_or(usize::MAX);
        let has_next_page = rows.len() > limit;
        rows.truncate(limit);
        Self {
            items: rows.into_iter().map(|row| (cursor(&row), row)).collect(),
            has_next_page,
            has_previous_page: request.after.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_including_separators_in_keys() {
        let cursor = Cursor::new("Mug | large", 42);
        assert_eq!(Cursor::decode(&cursor.encode()).ok(), Some(cursor));
        assert!(Cursor::decode("not-a-cursor!").is_err());
    }

    #[test]
    fn page_size_is_bounded() {
        assert!(PageRequest::parse(-1, None).is_err());
        assert!(PageRequest::parse(101, None).is_err());
        assert!(PageRequest::parse(100, None).is_ok());
    }
}

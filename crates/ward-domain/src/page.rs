//! Page sizes for cursor-paginated listings.

use crate::DomainError;

/// A validated page size: 1 to [`PageLimit::MAX`], default [`PageLimit::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// The largest page a client may ask for.
    pub const MAX: u32 = 200;
    /// The page size when the client does not say.
    pub const DEFAULT: u32 = 50;

    /// Parses an optional requested size.
    pub fn parse(requested: Option<i64>) -> Result<Self, DomainError> {
        match requested {
            None => Ok(Self(Self::DEFAULT)),
            Some(n) if (1..=i64::from(Self::MAX)).contains(&n) => Ok(Self(n as u32)),
            Some(_) => Err(DomainError::invalid("limit", "must be between 1 and 200")),
        }
    }

    /// The size as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), 50);
        assert_eq!(PageLimit::parse(Some(200)).unwrap().get(), 200);
        assert!(PageLimit::parse(Some(0)).is_err());
        assert!(PageLimit::parse(Some(-1)).is_err());
        assert!(PageLimit::parse(Some(201)).is_err());
        assert!(PageLimit::parse(Some(i64::MAX)).is_err());
    }
}

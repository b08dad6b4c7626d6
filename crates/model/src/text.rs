//! The rules every text field obeys on its way to a Postgres column, in one place: the message
//! parser and the writer's row check both apply them, so nothing the table would refuse gets
//! past the model.
//!
//! Postgres `text` and `varchar` cannot hold U+0000 (a UTF-8 database refuses the byte with
//! SQLSTATE 22021), and `varchar(n)` counts characters, not bytes (SQLSTATE 22001 beyond `n`).
//! Everything else a Rust `String` can hold, Postgres stores.

/// Why a text cannot be stored in its column. Never carries the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Holds U+0000, which Postgres text cannot store.
    #[error("holds a NUL character (U+0000)")]
    NulCharacter,
    /// More characters than the column allows.
    #[error("is longer than {max} characters")]
    TooLong {
        /// The column's limit, in characters.
        max: usize,
    },
}

/// Checks that `text` fits a `varchar(max)` column.
pub fn check_text(text: &str, max: usize) -> Result<(), TextError> {
    if text.contains('\0') {
        return Err(TextError::NulCharacter);
    }
    // The byte length bounds the character count, so most texts are never counted.
    if text.len() > max && text.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_are_counted_not_bytes() {
        assert_eq!(check_text(&"é".repeat(32), 32), Ok(()));
        assert_eq!(check_text(&"é".repeat(33), 32), Err(TextError::TooLong { max: 32 }));
        assert_eq!(check_text("", 0), Ok(()));
    }

    #[test]
    fn a_nul_anywhere_is_refused() {
        for text in ["\0", "a\0", "\0a", "a\0b"] {
            assert_eq!(check_text(text, 32), Err(TextError::NulCharacter), "{text:?}");
        }
        // Other control characters are stored as they are.
        assert_eq!(check_text("a\u{1}\u{7f}b", 32), Ok(()));
    }
}

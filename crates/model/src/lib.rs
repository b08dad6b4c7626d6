//! Domain types of Fetchreward, free of gRPC, AWS and database code.
//!
//! - [`parse_login`] turns an SQS message body into a [`LoginEvent`] by the rules of the design,
//!   or into a [`Rejection`] that says which rule was broken without ever quoting a value.
//! - [`canonical_ip`] and [`canonical_device_id`] give the form of a personal value that is
//!   tokenized, so that equal values always give equal tokens.
//! - [`Token`] is the text form `<kind>_v<N>_<base64url>` of a tokenized value.
//! - [`MaskedLogin`] is a login event whose personal fields have been replaced by tokens: the
//!   row the writer stores.
//! - [`MaskRule`] gives the masked form of a personal value (`66.194.53.x`, `***-**-5928`).
//! - [`attributes`] names the SQS message attributes of dead-lettered and redriven messages.

pub mod attributes;

mod app_version;
mod login;
mod masked;
mod pii;
mod reveal_mask;
mod text;
mod token;

pub use app_version::app_version_number;
pub use login::{LoginEvent, Rejection, limits, parse_login};
pub use masked::{MaskedLogin, MaskedLoginError, MaskedLoginFields};
pub use pii::{Pii, PiiKind, PiiValueError, canonical_device_id, canonical_ip};
pub use reveal_mask::{HIDDEN, MaskRule, MaskRuleError};
pub use text::{TextError, check_text};
pub use token::{MAC_LEN, Token, TokenParseError};

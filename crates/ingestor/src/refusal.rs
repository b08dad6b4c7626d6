//! [`Refusal`]: why a message cannot become a row, and who said so.

use fetchreward_model::Rejection;

/// Why one message cannot become a row: what its copy in the dead-letter queue carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `ingestor` (the message rules), `vault` or `writer`.
    pub refused_by: &'static str,
    /// A stable code, e.g. `nul_character`, `invalid_ip` or `db_constraint_violation`.
    pub code: String,
    /// One line naming the field and the rule; never a value.
    pub reason: String,
}

impl Refusal {
    /// The refusal of a message that breaks a rule of the model.
    pub fn of_rejection(rejection: &Rejection) -> Self {
        Refusal {
            refused_by: "ingestor",
            code: rejection.code().to_owned(),
            reason: rejection.to_string(),
        }
    }
}

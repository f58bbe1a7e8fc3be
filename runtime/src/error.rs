//! The runtime's errors, each mapped to the gRPC code CRI clients expect.

/// An error a CRI call returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id or image that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A request the runtime cannot honour as written.
    #[error("{0}")]
    InvalidArgument(String),
    /// An object in the wrong state for the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A call that ran out of time (ExecSync's timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Anything else, with its context chain.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(what: impl std::fmt::Display) -> Error {
        Error::NotFound(what.to_string())
    }

    pub fn invalid(what: impl std::fmt::Display) -> Error {
        Error::InvalidArgument(what.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::Internal(err.into())
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> tonic::Status {
        match &err {
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            Error::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            Error::DeadlineExceeded(m) => tonic::Status::deadline_exceeded(m),
            Error::Internal(e) => tonic::Status::internal(format!("{e:#}")),
        }
    }
}

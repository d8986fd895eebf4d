//! Error answers, in the body each generation uses.
//!
//! v3, v4 and v5 answer `{"error","error_description"}`; 2026 answers
//! `{"code","message"}`, except `ADAM-ERR0123` which stays in the old shape
//! (observed in production). The WSO2 gateway in front of every generation answers
//! credential problems and some throttling with `{"fault":{…}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The API generation a request belongs to, which decides error shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    V3,
    V4,
    V5,
    Api2026,
}

/// Why a data request is refused, independent of the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400 `Invalid_request`: a bad or missing parameter, or bad dates.
    InvalidRequest(String),
    /// 400 `ADAM-ERR0123`: the period starts before the meter's commissioning.
    BeforeActivation,
    /// 400 `ADAM-ERR0125` (v3–v5) / `ADAM-DC-0016` (2026): older than the history.
    TooOld,
    /// 400 `ADAM-DC-0015`: load curve over 7 days.
    TooLong,
    /// 400 `ADAM-ERR0069`: consumption asked on a production point or the reverse.
    WrongDirection,
    /// 403 `ADAM-DC-0008`: no consent for this point (never given, revoked, expired).
    NoConsent,
    /// 404 `no_data_found`.
    NoData,
    /// 500 `technical_error` (v3–v5) / `ADAM-DC-0500` (2026).
    Technical,
    /// 2026 only: a request outside the swagger gets a 500 (the reason is logged).
    OutsideSwagger(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

#[derive(Serialize)]
struct CodeBody<'a> {
    code: &'a str,
    message: &'a str,
}

/// `{"error","error_description"}`.
pub fn error_body(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error,
            error_description: description,
        }),
    )
        .into_response()
}

/// `{"code","message"}`.
pub fn code_body(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(CodeBody { code, message })).into_response()
}

/// An error in the shape of `generation`.
pub fn generation_error(
    generation: Gen,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    match generation {
        Gen::Api2026 => code_body(status, code, message),
        _ => error_body(status, code, message),
    }
}

impl Refusal {
    /// The answer Enedis gives for this refusal in `generation`.
    pub fn response(&self, generation: Gen) -> Response {
        let bad = StatusCode::BAD_REQUEST;
        match self {
            Refusal::InvalidRequest(message) => {
                generation_error(generation, bad, "Invalid_request", message)
            }
            // Always the old shape, even in 2026 (MED-README, "Pièges relevés").
            Refusal::BeforeActivation => error_body(
                bad,
                "ADAM-ERR0123",
                "The requested period cannot be anterior to the meter's last activation date",
            ),
            Refusal::TooOld => match generation {
                Gen::Api2026 => code_body(
                    bad,
                    "ADAM-DC-0016",
                    "La date de début doit être postérieure à la profondeur d'historique",
                ),
                _ => error_body(
                    bad,
                    "ADAM-ERR0125",
                    "The start date must be greater than the history deadline",
                ),
            },
            Refusal::TooLong => generation_error(
                generation,
                bad,
                "ADAM-DC-0015",
                "The requested period must be less than 7 days for an access to the load curve",
            ),
            Refusal::WrongDirection => generation_error(
                generation,
                bad,
                "ADAM-ERR0069",
                "The requested data do not match the usage point: consumption asked on a production point or the reverse",
            ),
            Refusal::NoConsent => generation_error(
                generation,
                StatusCode::FORBIDDEN,
                "ADAM-DC-0008",
                "No consent can be found for this customer and this usage point.",
            ),
            Refusal::NoData => generation_error(
                generation,
                StatusCode::NOT_FOUND,
                "no_data_found",
                "no measure found for this usage point",
            ),
            Refusal::Technical => match generation {
                Gen::Api2026 => code_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ADAM-DC-0500",
                    "Problème technique dans l'interrogation du SI coeur",
                ),
                _ => error_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "technical_error",
                    "A technical error occurred, please retry later",
                ),
            },
            Refusal::OutsideSwagger(reason) => {
                tracing::info!(%reason, "request outside the 2026 swagger, answering 500");
                code_body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500",
                    "Internal Server Error",
                )
            }
        }
    }
}

#[derive(Serialize)]
struct FaultBody<'a> {
    fault: Fault<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fault<'a> {
    code: u32,
    message: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_access_time: Option<&'a str>,
}

/// A WSO2 gateway fault.
pub fn wso2_fault(
    status: StatusCode,
    code: u32,
    message: &str,
    description: &str,
    next_access_time: Option<&str>,
) -> Response {
    (
        status,
        Json(FaultBody {
            fault: Fault {
                code,
                message,
                description,
                next_access_time,
            },
        }),
    )
        .into_response()
}

/// 401 for a missing bearer token.
pub fn missing_credentials() -> Response {
    let mut r = wso2_fault(
        StatusCode::UNAUTHORIZED,
        900902,
        "Missing Credentials",
        "Required OAuth credentials not provided. Make sure your API invocation call has a header: 'Authorization : Bearer ACCESS_TOKEN'",
        None,
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("OAuth2 realm=\"WSO2 API Manager\""),
    );
    r
}

/// 401 for wrong client credentials or an unknown, expired or misplaced token.
pub fn invalid_credentials() -> Response {
    let mut r = wso2_fault(
        StatusCode::UNAUTHORIZED,
        900901,
        "Invalid Credentials",
        "Invalid Credentials. Make sure you have provided the correct security credentials",
        None,
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "OAuth2 realm=\"WSO2 API Manager\", error=\"invalid_token\", error_description=\"The access token is invalid or expired\"",
        ),
    );
    r
}

/// 404 from the gateway for a path no API serves.
pub fn gateway_not_found() -> Response {
    #[derive(Serialize)]
    struct NotFound<'a> {
        code: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        message: &'a str,
        description: &'a str,
    }
    (
        StatusCode::NOT_FOUND,
        Json(NotFound {
            code: "404",
            kind: "Status report",
            message: "Not Found",
            description: "The requested resource is not available.",
        }),
    )
        .into_response()
}

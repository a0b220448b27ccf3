use super::*;

const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_well_formed_traceparent_parses() {
    let Some((trace, span, flags)) = parse_traceparent(GOOD.as_bytes()) else {
        panic!("{GOOD} refused");
    };
    assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.to_string(), "00f067aa0ba902b7");
    assert!(flags.is_sampled());
    let unsampled = GOOD.replace("-01", "-00");
    let parsed = parse_traceparent(unsampled.as_bytes());
    assert!(parsed.is_some_and(|(_, _, f)| !f.is_sampled()));
    // Unknown flag bits are not passed on.
    let other = GOOD.replace("-01", "-ff");
    let parsed = parse_traceparent(other.as_bytes());
    assert!(parsed.is_some_and(|(_, _, f)| f.to_u8() == 1));
    // A later version may append fields after a dash.
    let later = format!("{}-extra", GOOD.replacen("00", "01", 1));
    assert!(parse_traceparent(later.as_bytes()).is_some());
}

#[test]
fn malformed_traceparents_are_refused() {
    let bad = [
        String::new(),
        "garbage".to_owned(),
        GOOD.to_uppercase(),
        GOOD.replacen("00", "ff", 1),
        format!("{GOOD}-extra"),
        format!("{GOOD}x"),
        GOOD[..54].to_owned(),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01".to_owned(),
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x".to_owned(),
    ];
    for value in bad {
        assert!(parse_traceparent(value.as_bytes()).is_none(), "{value:?}");
    }
}

#[test]
fn two_traceparent_headers_are_not_continued() {
    let mut headers = HeaderMap::new();
    headers.append(TRACEPARENT, HeaderValue::from_static(GOOD));
    assert!(remote_parent(&headers).is_some());
    headers.append(TRACEPARENT, HeaderValue::from_static(GOOD));
    assert!(remote_parent(&headers).is_none());
}

#[test]
fn tracestate_is_kept_when_valid() {
    let mut headers = HeaderMap::new();
    headers.append(TRACEPARENT, HeaderValue::from_static(GOOD));
    headers.append(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
    headers.append(
        TRACESTATE,
        HeaderValue::from_static("rojo=00f067aa0ba902b7"),
    );
    let parent = remote_parent(&headers).unwrap_or_else(|| panic!("refused"));
    assert_eq!(parent.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
    assert_eq!(parent.trace_state().get("congo"), Some("t61rcWkgMzE"));
    headers.insert(TRACESTATE, HeaderValue::from_static("not a list"));
    let parent = remote_parent(&headers).unwrap_or_else(|| panic!("refused"));
    assert_eq!(parent.trace_state().header(), "");
}

#[test]
fn sample_ratio_is_a_share() {
    assert_eq!(parse_sample_ratio("0"), Ok(0.0));
    assert_eq!(parse_sample_ratio("0.25"), Ok(0.25));
    assert_eq!(parse_sample_ratio("1.0"), Ok(1.0));
    for bad in ["-0.1", "1.5", "NaN", "inf", "", "half"] {
        let error = parse_sample_ratio(bad).err().unwrap_or_default();
        assert!(
            error.contains("0.0") && error.contains("1.0"),
            "{bad}: {error}"
        );
    }
}

#[test]
fn attributes_from_client_input_are_bounded() {
    let long = "a".repeat(5000);
    assert_eq!(cut(&long).len(), MAX_ATTRIBUTE_BYTES);
    let wide = "é".repeat(1000);
    assert!(cut(&wide).len() <= MAX_ATTRIBUTE_BYTES && wide.starts_with(cut(&wide)));
    let req = Request::builder()
        .header(HOST, "app.example:8080")
        .body(())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server_address(&req), Some("app.example"));
    let req = Request::builder()
        .header(HOST, "[::1]")
        .body(())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server_address(&req), Some("[::1]"));
}

#[test]
fn http_endpoint_gets_the_traces_path() {
    assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
    assert_eq!(
        http_traces_url("http://c:4318/v1/traces"),
        "http://c:4318/v1/traces"
    );
}

#[test]
fn without_a_span_nothing_is_noted() {
    let req = Request::builder()
        .body(())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trace_id_of(&req), None);
    // No note: a no-op, not a panic.
    note_route(&req, Some(("r", "/api")));
}

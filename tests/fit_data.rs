//! CSV reading (quoted headers, derived columns, errors), row selections and the frontier.

use loopscale::analysis::CsvColumns;
use loopscale::fit::*;

#[test]
fn reads_quoted_headers_and_derives_tokens() {
    let text = "# a comment line\n\"Model Size\",\"Training FLOP\",loss,\"run, name\"\n1e8,6e17,3.1,\"a, b\"\n2e8,1.2e18,2.9,c\n";
    let cols = CsvColumns {
        group: Some("run, name".into()),
        ..CsvColumns::epoch_chinchilla()
    };
    let p = loopscale::analysis::csv::parse_points(text, &cols).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p.group.as_ref().unwrap()[0], "a, b");
    assert_eq!(p.tokens().unwrap(), vec![1e9, 1e9]);
    assert_eq!(
        p.d.as_deref(),
        Some(&[1e9, 1e9][..]),
        "reader fills D = C/(6N)"
    );
    // Compute from N and D when C is absent.
    let q = Points {
        n: Some(vec![1e8]),
        d: Some(vec![1e9]),
        loss: vec![3.0],
        ..Default::default()
    };
    assert_eq!(q.compute().unwrap(), vec![6e17]);
}

#[test]
fn missing_or_bad_columns_are_errors() {
    let cols = CsvColumns {
        n: Some("params".into()),
        ..Default::default()
    };
    assert!(loopscale::analysis::csv::parse_points("n,loss\n1,2\n", &cols).is_err());
    assert!(
        loopscale::analysis::csv::parse_points("n,loss\n1,x\n", &CsvColumns::default()).is_err()
    );
    assert!(loopscale::analysis::csv::parse_points("n,loss\n1\n", &CsvColumns::default()).is_err());
    // Default names absent from the file are simply not read.
    let p =
        loopscale::analysis::csv::parse_points("n,loss\n1,2\n", &CsvColumns::default()).unwrap();
    assert!(p.c.is_none() && p.n.is_some());
}

#[test]
fn drop_top_loss_removes_the_highest() {
    let p = Points {
        loss: vec![3.0, 5.0, 1.0, 4.0],
        c: Some(vec![1.0, 2.0, 3.0, 4.0]),
        ..Default::default()
    };
    let q = p.drop_top_loss(2);
    assert_eq!(q.loss, vec![3.0, 1.0]);
    assert_eq!(q.c.unwrap(), vec![1.0, 3.0]);
    assert!(p.drop_top_loss(10).is_empty());
}

#[test]
fn frontier_is_the_lower_envelope() {
    let c = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0];
    let loss = [5.0, 4.5, 4.0, 4.2, 3.0, 3.0];
    assert_eq!(compute_frontier(&c, &loss), vec![0, 2, 4]);
}

#[test]
fn heldout_and_display() {
    let c: Vec<f64> = (0..30)
        .map(|i| 10f64.powf(17.0 + 0.15 * i as f64))
        .collect();
    let loss = c.iter().map(|c| 1.7 + 30.0 * c.powf(-0.08)).collect();
    let pts = Points {
        c: Some(c),
        loss,
        ..Default::default()
    };
    let o = FitOptions {
        bootstrap: None,
        heldout: Some(HeldOutSpec::Count(5)),
        ..Default::default()
    };
    let r = fit_compute(&pts, false, &o).unwrap();
    let h = r.heldout.as_ref().unwrap();
    assert_eq!(h.n, 5);
    assert!(h.max_abs_rel_error < 1e-4, "{h:?}");
    let text = r.to_string();
    assert!(text.contains("alpha") && text.contains("held out 5"));
}

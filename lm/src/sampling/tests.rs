use super::*;

fn ln(p: &[f64]) -> Vec<f32> {
    p.iter().map(|&x| (x as f32).ln()).collect()
}

fn kept(l: &[f32]) -> Vec<bool> {
    l.iter().map(|x| x.is_finite()).collect()
}

#[test]
fn repetition_penalty_as_transformers() {
    let mut l = vec![2.0, -2.0, 1.0];
    RepetitionPenalty(2.0).process(&mut l, &[0, 1, 1, 7]);
    assert_eq!(l, vec![1.0, -4.0, 1.0]);
}

#[test]
fn top_k_keeps_ties_at_the_boundary() {
    let mut l = vec![1.0, 3.0, 3.0, 2.0];
    TopK(2).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![false, true, true, false]);
    let mut l = vec![1.0, 3.0, 3.0, 2.0];
    TopK(3).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![false, true, true, true]);
    let mut l = vec![1.0, 3.0];
    TopK(10).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![true, true]);
}

#[test]
fn top_p_drops_the_unlikely_tail() {
    let mut l = ln(&[0.5, 0.3, 0.15, 0.05]);
    TopP(0.75).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![true, true, false, false]);
    let mut l = ln(&[0.5, 0.3, 0.15, 0.05]);
    TopP(0.9).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![true, true, true, false]);
    // A tiny p still keeps the most likely token.
    let mut l = ln(&[0.5, 0.3, 0.15, 0.05]);
    TopP(1e-6).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![true, false, false, false]);
}

#[test]
fn min_p_is_relative_to_the_top_token() {
    let mut l = ln(&[0.5, 0.3, 0.15, 0.05]);
    MinP(0.2).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![true, true, true, false]);
    let mut l = ln(&[0.5, 0.3, 0.15, 0.05]);
    MinP(0.7).process(&mut l, &[]);
    assert_eq!(kept(&l), vec![true, false, false, false]);
}

#[test]
fn processors_compose_in_order() {
    let params = SamplingParams {
        temperature: 0.5,
        top_k: Some(3),
        top_p: Some(0.9),
        min_p: None,
        repetition_penalty: Some(1.5),
    };
    let s = Sampler::new(&params, 0).unwrap();
    let logits = vec![1.0, 2.0, 0.5, 1.5, -1.0];
    let out = s.process(&logits, &[1]);
    // Penalty (2.0 -> 1.33), temperature (x2), top-3 of [2, 2.67, 1, 3, -2] keeps 0, 1, 3.
    assert!((out[1] - 2.0 / 1.5 * 2.0).abs() < 1e-6);
    assert!(out[2].is_infinite() && out[4].is_infinite());
    let d = s.distribution(&logits, &[1]);
    assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!(d[2], 0.0);
}

#[test]
fn greedy_is_argmax_and_one_hot() {
    let mut s = Sampler::new(&SamplingParams::greedy(), 0).unwrap();
    let logits = [0.1, 0.7, 0.7, -3.0];
    assert_eq!(s.sample_slice(&logits, &[]).unwrap(), 1);
    assert_eq!(s.distribution(&logits, &[]), vec![0.0, 1.0, 0.0, 0.0]);
}

#[test]
fn seeded_sampling_repeats() {
    let params = SamplingParams {
        temperature: 1.0,
        ..SamplingParams::greedy()
    };
    let logits = ln(&[0.25; 4]);
    let draws = |seed| {
        let mut s = Sampler::new(&params, seed).unwrap();
        (0..64)
            .map(|_| s.sample_slice(&logits, &[]).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(draws(7), draws(7));
    assert_ne!(draws(7), draws(8));
}

#[test]
fn draws_follow_the_distribution() {
    let probs = [0.5, 0.3, 0.15, 0.05, 0.0];
    let params = SamplingParams {
        temperature: 1.0,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(&params, 42).unwrap();
    let n = 40_000;
    let mut counts = [0usize; 5];
    for _ in 0..n {
        counts[s.draw(&probs).unwrap() as usize] += 1;
    }
    for (c, p) in counts.iter().zip(probs) {
        let f = *c as f64 / n as f64;
        // Four standard deviations of a binomial frequency.
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        assert!((f - p).abs() <= 4.0 * sd + 1e-12, "{f} vs {p}");
    }
    assert_eq!(counts[4], 0);
}

#[test]
fn bad_settings_are_errors() {
    let with = |f: fn(&mut SamplingParams)| {
        let mut p = SamplingParams::greedy();
        f(&mut p);
        p.validate().is_err()
    };
    assert!(with(|p| p.temperature = -1.0));
    assert!(with(|p| p.temperature = f32::NAN));
    assert!(with(|p| p.top_k = Some(0)));
    assert!(with(|p| p.top_p = Some(0.0)));
    assert!(with(|p| p.top_p = Some(1.5)));
    assert!(with(|p| p.min_p = Some(-0.1)));
    assert!(with(|p| p.repetition_penalty = Some(0.0)));
    let mut s = Sampler::new(&SamplingParams::greedy(), 0).unwrap();
    assert!(s.draw(&[0.0, 0.0]).is_err());
}

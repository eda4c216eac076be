//! Parameter and FLOP counts: the arithmetic against the tensors a GPT actually creates, and
//! the FLOP formula against a count done by hand.

use candle_core::{DType, Device};
use loopscale::model::{
    Gpt, Mlp, ModelConfig, forward_flops_per_token, param_counts, train_flops_per_token,
};

#[test]
fn param_counts_equal_the_built_tensors() {
    let vocab = 256;
    for mlp in [Mlp::Relu2, Mlp::Gelu, Mlp::Swiglu] {
        for tie_embeddings in [true, false] {
            for (d_model, n_heads, n_layers, mlp_ratio) in
                [(32, 4, 2, 4), (48, 3, 3, 3), (40, 2, 1, 4)]
            {
                let cfg = ModelConfig {
                    d_model,
                    n_heads,
                    n_layers,
                    mlp,
                    mlp_ratio,
                    tie_embeddings,
                    ..ModelConfig::default()
                };
                let model = Gpt::new(&cfg, vocab, 16, 0, DType::F32, &Device::Cpu).unwrap();
                let counts = param_counts(&cfg, vocab);
                let built: usize = model.params().element_count();
                assert_eq!(counts.total, built as u64, "{cfg:?}");
                let embedding_like: usize = model
                    .params()
                    .params()
                    .iter()
                    .filter(|p| p.name == "token_embedding" || p.name == "lm_head")
                    .map(|p| p.var.elem_count())
                    .sum();
                assert_eq!(
                    counts.non_embedding,
                    (built - embedding_like) as u64,
                    "{cfg:?}"
                );
            }
        }
    }
}

/// d = 8, 2 heads (head width 4), 2 layers, ReLU² with ratio 4, vocabulary 16, context 4, tied.
#[test]
fn flops_match_a_hand_count() {
    let cfg = ModelConfig {
        d_model: 8,
        n_heads: 2,
        n_layers: 2,
        mlp: Mlp::Relu2,
        mlp_ratio: 4,
        tie_embeddings: true,
        qk_norm_gain: true,
        ..ModelConfig::default()
    };
    // One block: two norm gains 2·8 = 16; QKV 8·24 = 192 and output 8·8 = 64; QK-norm gains
    // 2·4 = 8 (learnable here; the default has none); MLP 8·32 + 32·8 = 512. Total 792.
    // Non-embedding: 2 blocks + final norm = 2·792 + 8 = 1592. Embedding 16·8 = 128 (tied).
    let counts = param_counts(&cfg, 16);
    assert_eq!(counts.non_embedding, 1592);
    assert_eq!(counts.total, 1592 + 128);
    // Forward per token: 2·1592 = 3184 for the weights; attention 4·d·seq = 4·8·4 = 128 per
    // layer, 256 for two; the head 2·d·V = 2·8·16 = 256. Sum 3696; training is 3× that.
    assert_eq!(forward_flops_per_token(&cfg, 16, 4), 3696.0);
    assert_eq!(train_flops_per_token(&cfg, 16, 4), 11088.0);
    // Untying the head adds parameters but no compute: the head matmul was already counted.
    let untied = ModelConfig {
        tie_embeddings: false,
        ..cfg
    };
    assert_eq!(param_counts(&untied, 16).total, 1592 + 256);
    assert_eq!(train_flops_per_token(&untied, 16, 4), 11088.0);
    // Without QK-norm gains (the default) each block has 8 fewer parameters.
    let no_gains = ModelConfig {
        qk_norm_gain: false,
        ..untied
    };
    assert_eq!(param_counts(&no_gains, 16).non_embedding, 1592 - 2 * 8);
}

/// Every parameter has exactly one role; weight decay reaches exactly the hidden matrices (and
/// the embedding and untied head only when asked), never norms.
#[test]
fn decay_groups_cover_matrices_only() {
    use loopscale::model::ParamRole;
    let cfg = ModelConfig {
        tie_embeddings: false,
        mlp: Mlp::Swiglu,
        qk_norm_gain: true,
        ..ModelConfig::default()
    };
    let model = Gpt::new(&cfg, 256, 16, 0, DType::F32, &Device::Cpu).unwrap();
    for p in model.params().params() {
        let expected = if p.name == "token_embedding" || p.name == "lm_head" {
            ParamRole::Embedding
        } else if p.var.rank() == 2 {
            ParamRole::Matrix
        } else {
            ParamRole::Gain
        };
        assert_eq!(p.role, expected, "{}", p.name);
        assert_eq!(p.role.decayed(false), p.role == ParamRole::Matrix);
    }
    let decayed = model
        .params()
        .params()
        .iter()
        .filter(|p| p.role.decayed(true))
        .count();
    // Per block QKV, output, and SwiGLU's three matrices; plus the embedding and the head.
    assert_eq!(decayed, cfg.n_layers * 5 + 2);
}

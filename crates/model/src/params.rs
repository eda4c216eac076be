//! The trainable parameters of a network: one registry that creates them from a seeded RNG,
//! names them, and gives each a role, from which the optimizer derives its group (weight decay
//! or not; Muon or AdamW), and a learning-rate multiplier (1, or μP's 1/m for hidden matrices).
//!
//! Weights are drawn from our own `StdRng`, never from candle's device RNG, so the same seed
//! gives bit-identical initial weights on every device and every run. Orthogonal inits (the
//! reference's "scaled-zero") come from a QR factorisation on the host, in f64.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// What a parameter is, as far as the optimizer cares: every parameter has exactly one role,
/// and the role alone decides its optimizer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// Hidden weight matrices inside the blocks (attention and MLP projections): AdamW decays
    /// them; Muon orthogonalises their updates.
    Matrix,
    /// The token embedding and an untied LM head: AdamW, decayed only when the run asks
    /// (`train.decay_embeddings`). Decaying them pulls rarely seen tokens' rows towards zero,
    /// and with tied embeddings the embedding is also the output layer.
    Embedding,
    /// The linear (Huginn-style) injection's `W`: decayed like a matrix, but always AdamW.
    Adapter,
    /// Norm gains: AdamW, never decayed.
    Gain,
    /// The looped model's recurrence parameters (`A_log`, `dt_bias`, `B`, and the readout
    /// `C`): AdamW, never decayed, as in the reference.
    Recurrent,
    /// LoopFormer's loop conditioning (time and step embedders, the blocks' adaptive norms):
    /// AdamW, never decayed — the adaptive norms start at zero and decay would hold them there.
    Conditioning,
}

impl ParamRole {
    /// Whether a parameter of this role and rank is a *hidden* matrix in μP's sense (both
    /// dimensions grow with the width): the blocks' matrices, the linear injection's `W`, and
    /// the recurrence's 2-D `B` and `C`. Vectors, norm gains, the embedding and the head are not.
    pub fn hidden(self, rank: usize) -> bool {
        match self {
            ParamRole::Matrix | ParamRole::Adapter => true,
            ParamRole::Recurrent => rank == 2,
            ParamRole::Embedding | ParamRole::Gain | ParamRole::Conditioning => false,
        }
    }

    /// Whether AdamW applies decoupled weight decay, given the run's embedding choice.
    pub fn decayed(self, decay_embeddings: bool) -> bool {
        match self {
            ParamRole::Matrix | ParamRole::Adapter => true,
            ParamRole::Embedding => decay_embeddings,
            ParamRole::Gain | ParamRole::Recurrent | ParamRole::Conditioning => false,
        }
    }
}

/// One named trainable tensor (a clone shares the variable).
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub role: ParamRole,
    /// The factor on the run's learning rate for this parameter: 1, or under μP `1/m` for a
    /// hidden matrix (`m = d_model / mup_base_width`).
    pub lr_scale: f64,
}

/// All parameters of one model, in creation order.
pub struct ParamStore {
    params: Vec<Param>,
    rng: StdRng,
    dtype: DType,
    device: Device,
    /// The learning-rate factor given to hidden matrices registered from now on.
    hidden_lr_scale: f64,
}

impl ParamStore {
    /// An empty store whose initialisation draws from `seed`.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        ParamStore {
            params: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            dtype,
            device: device.clone(),
            hidden_lr_scale: 1.0,
        }
    }

    /// Gives every hidden matrix ([`ParamRole::hidden`]) registered from now on the learning-
    /// rate factor `scale` (μP: `1/m`); the others keep 1.
    pub fn set_hidden_lr_scale(&mut self, scale: f64) {
        self.hidden_lr_scale = scale;
    }

    /// A matrix with entries drawn from N(0, std²).
    pub fn normal(
        &mut self,
        name: &str,
        shape: (usize, usize),
        std: f64,
        role: ParamRole,
    ) -> Result<Tensor> {
        let normal = Normal::new(0.0, std).map_err(candle_core::Error::wrap)?;
        let values: Vec<f64> = (0..shape.0 * shape.1)
            .map(|_| normal.sample(&mut self.rng))
            .collect();
        let init = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        self.register(name, init, role)
    }

    /// A random orthogonal matrix (orthonormal rows or columns, whichever are fewer) scaled so
    /// its entries have standard deviation `std`: the reference's truncated orthogonal init.
    /// The QR factorisation's input is a truncated normal (±2), its signs fixed so the
    /// distribution is uniform (Haar) over orthogonal matrices.
    pub fn orthogonal(
        &mut self,
        name: &str,
        shape: (usize, usize),
        std: f64,
        role: ParamRole,
    ) -> Result<Tensor> {
        let values = self.orthogonal_values(shape, std);
        self.constant(name, &[shape.0, shape.1], values, role)
    }

    /// The values of [`ParamStore::orthogonal`], row-major, without registering a parameter
    /// (for a matrix assembled from several orthogonal blocks).
    pub fn orthogonal_values(&mut self, shape: (usize, usize), std: f64) -> Vec<f64> {
        let (rows, cols) = shape;
        let (long, short) = (rows.max(cols), rows.min(cols));
        let draws = self.sample_truncated(long * short, 1.0, 2.0);
        // `short` vectors of length `long`, orthonormalised in turn.
        let basis = orthonormal_columns(draws, long, short);
        let gain = std * (long as f64).sqrt();
        (0..rows * cols)
            .map(|k| {
                let (i, j) = (k / cols, k % cols);
                // Tall: column j is basis vector j; wide: row i is basis vector i.
                let v = if rows >= cols {
                    basis[j][i]
                } else {
                    basis[i][j]
                };
                v * gain
            })
            .collect()
    }

    /// A `(rows, cols)` matrix of zeros (an output projection that starts the block as the
    /// identity).
    pub fn zeros(&mut self, name: &str, shape: (usize, usize), role: ParamRole) -> Result<Tensor> {
        let init = Tensor::zeros(shape, self.dtype, &self.device)?;
        self.register(name, init, role)
    }

    /// A vector of ones (a norm's gain); never decayed.
    pub fn ones(&mut self, name: &str, len: usize) -> Result<Tensor> {
        let init = Tensor::ones(len, self.dtype, &self.device)?;
        self.register(name, init, ParamRole::Gain)
    }

    /// A tensor of given initial `values` (any shape), e.g. an identity matrix or a constant.
    pub fn constant(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f64>,
        role: ParamRole,
    ) -> Result<Tensor> {
        let init = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        self.register(name, init, role)
    }

    /// `n` draws from N(0, std²) out of the store's seeded stream, for inits that are a fixed
    /// pattern plus noise.
    pub fn sample_normal(&mut self, n: usize, std: f64) -> Result<Vec<f64>> {
        let normal = Normal::new(0.0, std).map_err(candle_core::Error::wrap)?;
        Ok((0..n).map(|_| normal.sample(&mut self.rng)).collect())
    }

    /// `n` draws from N(0, std²) truncated to ±`limit`·std (by rejection), from the store's
    /// seeded stream.
    pub fn sample_truncated(&mut self, n: usize, std: f64, limit: f64) -> Vec<f64> {
        truncated_normal(&mut self.rng, n, std, limit)
    }

    fn register(&mut self, name: &str, init: Tensor, role: ParamRole) -> Result<Tensor> {
        let var = Var::from_tensor(&init)?;
        // The layer keeps a clone of the variable's tensor: same storage and id, so the
        // optimizer's in-place updates are what the layer sees, and gradients are found by id.
        let tensor = var.as_tensor().clone();
        let lr_scale = if role.hidden(tensor.rank()) {
            self.hidden_lr_scale
        } else {
            1.0
        };
        self.params.push(Param {
            name: name.to_string(),
            var,
            role,
            lr_scale,
        });
        Ok(tensor)
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn find(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Total number of scalar parameters.
    pub fn element_count(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// `n` draws from N(0, std²) truncated to ±`limit`·std, by rejection (at `limit` ≥ 2 fewer
/// than 5% of draws are rejected).
pub fn truncated_normal(rng: &mut StdRng, n: usize, std: f64, limit: f64) -> Vec<f64> {
    let normal = Normal::new(0.0, 1.0).expect("unit normal");
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let z: f64 = normal.sample(rng);
        if z.abs() <= limit {
            out.push(z * std);
        }
    }
    out
}

/// Orthonormalises `count` vectors of length `len` (`values`, vector-major) by modified
/// Gram–Schmidt, twice over for accuracy. Gram–Schmidt is QR with a positive diagonal of `R`,
/// i.e. exactly the sign convention that makes `Q` Haar-distributed.
fn orthonormal_columns(values: Vec<f64>, len: usize, count: usize) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = values.chunks(len).map(<[f64]>::to_vec).collect();
    for j in 0..count {
        let (done, rest) = basis.split_at_mut(j);
        let v = &mut rest[0];
        for _ in 0..2 {
            for q in done.iter() {
                let dot: f64 = q.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(q).for_each(|(x, q)| *x -= dot * q);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
    basis
}

/// A `(rows, cols)` matrix with ones on the main diagonal, as row-major values.
pub fn identity_values(rows: usize, cols: usize) -> Vec<f64> {
    (0..rows * cols)
        .map(|k| f64::from(u8::from(k / cols == k % cols)))
        .collect()
}

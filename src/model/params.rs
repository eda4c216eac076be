//! The trainable parameters of a network: one registry that creates them from a seeded RNG,
//! names them, and sorts them into the optimizer's weight-decay groups.
//!
//! Weights are drawn from our own `StdRng`, never from candle's device RNG, so the same seed
//! gives bit-identical initial weights on every device and every run.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// Whether the optimizer applies decoupled weight decay to a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecayGroup {
    /// Hidden weight matrices (attention and MLP projections, an untied LM head).
    Decay,
    /// Norm gains, and the token embedding: decaying the embedding pulls rarely seen tokens'
    /// rows towards zero for no benefit, and with tied embeddings it is also the output layer,
    /// whose scale the final norm already controls.
    NoDecay,
}

/// One named trainable tensor.
pub struct Param {
    pub name: String,
    pub var: Var,
    pub group: DecayGroup,
}

/// All parameters of one model, in creation order.
pub struct ParamStore {
    params: Vec<Param>,
    rng: StdRng,
    dtype: DType,
    device: Device,
}

impl ParamStore {
    /// An empty store whose initialisation draws from `seed`.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        ParamStore {
            params: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            dtype,
            device: device.clone(),
        }
    }

    /// A matrix with entries drawn from N(0, std²).
    pub fn normal(
        &mut self,
        name: &str,
        shape: (usize, usize),
        std: f64,
        group: DecayGroup,
    ) -> Result<Tensor> {
        let normal = Normal::new(0.0, std).map_err(candle_core::Error::wrap)?;
        let values: Vec<f64> = (0..shape.0 * shape.1)
            .map(|_| normal.sample(&mut self.rng))
            .collect();
        let init = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        self.register(name, init, group)
    }

    /// A vector of ones (a norm's gain); never decayed.
    pub fn ones(&mut self, name: &str, len: usize) -> Result<Tensor> {
        let init = Tensor::ones(len, self.dtype, &self.device)?;
        self.register(name, init, DecayGroup::NoDecay)
    }

    /// A tensor of given initial `values` (any shape), e.g. an identity matrix or a constant.
    pub fn constant(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f64>,
        group: DecayGroup,
    ) -> Result<Tensor> {
        let init = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        self.register(name, init, group)
    }

    /// `n` draws from N(0, std²) out of the store's seeded stream, for inits that are a fixed
    /// pattern plus noise.
    pub fn sample_normal(&mut self, n: usize, std: f64) -> Result<Vec<f64>> {
        let normal = Normal::new(0.0, std).map_err(candle_core::Error::wrap)?;
        Ok((0..n).map(|_| normal.sample(&mut self.rng)).collect())
    }

    fn register(&mut self, name: &str, init: Tensor, group: DecayGroup) -> Result<Tensor> {
        let var = Var::from_tensor(&init)?;
        // The layer keeps a clone of the variable's tensor: same storage and id, so the
        // optimizer's in-place updates are what the layer sees, and gradients are found by id.
        let tensor = var.as_tensor().clone();
        self.params.push(Param {
            name: name.to_string(),
            var,
            group,
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

//! Which burn device runs the model. Backends are cargo features; `--backend`/`--device`
//! choose among those built in.

use crate::util::exit::{Exit, ExitStatus};
use burn::tensor::Device;

/// Backends compiled into this binary, default first.
pub fn available() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "flex") {
        out.push("flex");
    }
    if cfg!(feature = "tch") {
        out.push("tch");
    }
    out
}

/// Whether tensors on `device` live in this process's memory, so that decoding runs on the
/// host kernels of [`crate::engine::kernels::matmul`] and [`crate::engine::kernels::attention`] (see `Gpt2::for_inference`).
/// That holds for libtorch's CPU device too: its general kernels repack the weights at every
/// call, and a row's result there can depend on the rows beside it. The backend still runs
/// training, and everything on a GPU.
pub fn is_host(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    if *device == Device::libtorch() {
        return true;
    }
    let _ = device;
    false
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{name}` is not built into this binary; built in: {available}")]
    NotBuilt { name: String, available: String },
    #[error("device `{device}` is not known to backend `{backend}`; use {allowed}")]
    BadDevice {
        backend: String,
        device: String,
        allowed: &'static str,
    },
}

/// An unknown or unbuilt backend or device is the user's choice to change.
impl ExitStatus for BackendError {
    fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

/// The device for `backend` (default: the first built in) and `device` (`cpu`, `cuda`,
/// `cuda:N`).
pub fn device(
    backend: Option<&str>,
    device: Option<&str>,
) -> Result<(String, Device), BackendError> {
    let built = available();
    let name = backend.unwrap_or(built.first().copied().unwrap_or("none"));
    if !built.contains(&name) {
        return Err(BackendError::NotBuilt {
            name: name.to_string(),
            available: built.join(", "),
        });
    }
    let device_name = device.unwrap_or("cpu");
    match name {
        #[cfg(feature = "flex")]
        "flex" => match device_name {
            "cpu" => Ok(("flex/cpu".to_string(), Device::flex())),
            other => Err(BackendError::BadDevice {
                backend: name.into(),
                device: other.into(),
                allowed: "cpu",
            }),
        },
        // burn marks burn-tch deprecated in favour of its CubeCL backends, but those cannot
        // build offline (their build downloads LLVM), so libtorch stays the GPU path.
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch" => {
            // Decoding's fused attention must not depend on the batch (see `libtorch`).
            crate::engine::libtorch::batch_invariant_attention(true);
            if device_name == "cpu" {
                return Ok(("tch/cpu".to_string(), Device::libtorch()));
            }
            let index = match device_name {
                "cuda" => Some(0),
                other => other
                    .strip_prefix("cuda:")
                    .and_then(|i| i.parse::<usize>().ok()),
            };
            match index {
                Some(i) => Ok((format!("tch/cuda:{i}"), Device::libtorch_cuda(i))),
                None => Err(BackendError::BadDevice {
                    backend: name.into(),
                    device: device_name.into(),
                    allowed: "cpu, cuda or cuda:N",
                }),
            }
        }
        _ => Err(BackendError::NotBuilt {
            name: name.to_string(),
            available: built.join(", "),
        }),
    }
}

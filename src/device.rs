//! Compute device selection: ponder's native CPU runtime, burn's `flex` CPU backend, or
//! burn's wgpu backend on a GPU adapter. `auto` takes a real GPU (one with a physical
//! identity) when there is one, and the CPU otherwise; a software adapter such as Mesa's
//! lavapipe is used only when `gpu` is asked for.

use burn::tensor::{Device, DeviceKind, Tensor};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum DeviceChoice {
    /// A real GPU if one exists, else the CPU.
    #[default]
    Auto,
    /// ponder's native CPU runtime (f32 GEMM, int8 AVX-512 VNNI).
    Cpu,
    /// burn's wgpu backend on the default adapter (a software adapter is accepted).
    Gpu,
    /// burn's `flex` CPU backend.
    Flex,
}

/// Where a model actually runs.
#[derive(Clone, Debug)]
pub enum Resolved {
    NativeCpu,
    Burn { device: Device, name: String },
}

impl Resolved {
    pub fn describe(&self) -> String {
        match self {
            Resolved::NativeCpu => {
                let simd = if crate::embed::kernels::has_vnni() { "avx512-vnni" } else { "portable" };
                format!("cpu (native, {simd}, {} threads)", rayon::current_num_threads())
            }
            Resolved::Burn { name, .. } => name.clone(),
        }
    }
}

/// Runs a tiny computation so that a missing or broken adapter is an error, not a panic later.
fn probe(device: &Device) -> Result<()> {
    let device = device.clone();
    std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0, 3.0], &device);
        let v: f32 = t.sum().into_scalar();
        v
    })
    .map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        Error::Device(format!("the wgpu adapter could not run a kernel: {msg}"))
    })
    .and_then(|v| {
        if (v - 6.0).abs() < 1e-6 {
            Ok(())
        } else {
            Err(Error::Device(format!("the adapter computed 1+2+3 = {v}")))
        }
    })
}

/// Runs `f` catching panics, with stderr pointed at /dev/null meanwhile: graphics drivers
/// probed for adapters print their own complaints (missing display servers and the like).
fn quiet<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    #[cfg(unix)]
    let saved = {
        use std::os::fd::AsRawFd;
        // SAFETY: plain descriptor calls; the saved descriptor is restored below.
        unsafe {
            let saved = libc::dup(2);
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                libc::dup2(null.as_raw_fd(), 2);
            }
            saved
        }
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    #[cfg(unix)]
    // SAFETY: restores the descriptor saved above.
    unsafe {
        if saved >= 0 {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
    }
    r
}

pub fn resolve(choice: DeviceChoice) -> Result<Resolved> {
    match choice {
        DeviceChoice::Cpu => Ok(Resolved::NativeCpu),
        DeviceChoice::Flex => Ok(Resolved::Burn { device: Device::flex(), name: "cpu (burn flex)".into() }),
        DeviceChoice::Gpu => {
            let device = Device::wgpu(DeviceKind::DefaultDevice);
            quiet(|| probe(&device)).map_err(|_| Error::Device("no usable wgpu adapter".into()))??;
            let name = quiet(|| device.identity().map(|i| i.name))
                .ok()
                .flatten()
                .unwrap_or_else(|| "default adapter".into());
            Ok(Resolved::Burn { device, name: format!("gpu (wgpu: {name})") })
        }
        DeviceChoice::Auto => {
            if std::env::var_os("PONDER_NO_GPU").is_some() {
                return Ok(Resolved::NativeCpu);
            }
            let gpus = quiet(Device::enumerate_physical).unwrap_or_default();
            for gpu in gpus {
                if let Some(device) = gpu.devices.into_vec().into_iter().next() {
                    if quiet(|| probe(&device)).map(|r| r.is_ok()).unwrap_or(false) {
                        return Ok(Resolved::Burn { device, name: format!("gpu (wgpu: {})", gpu.name) });
                    }
                }
            }
            Ok(Resolved::NativeCpu)
        }
    }
}

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

/// Whether the system shows a GPU device node under `dev`: on Linux a DRM render node
/// (`dri/renderD*`), an NVIDIA device (`nvidia0`, ...) or WSL's GPU (`dxg`). Without one, `auto` does not probe:
/// enumerating adapters loads every installed Vulkan driver (Mesa's software one brings LLVM,
/// about 70 MB of resident memory for the rest of the process) only to find CPU adapters.
/// Other systems always probe.
fn has_gpu_node(dev: &std::path::Path) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let any = |dir: &std::path::Path, prefix: &str| {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(prefix)))
            .unwrap_or(false)
    };
    any(&dev.join("dri"), "renderD") || any(dev, "nvidia") || dev.join("dxg").exists()
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
            if std::env::var_os("PONDER_NO_GPU").is_some() || !has_gpu_node(std::path::Path::new("/dev")) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn auto_probes_only_where_a_gpu_device_node_exists() {
        let dir = std::env::temp_dir().join(format!("ponder-dev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("dri")).unwrap();
        assert!(!has_gpu_node(&dir), "no nodes");
        std::fs::write(dir.join("dri/card0"), b"").unwrap();
        assert!(!has_gpu_node(&dir), "a display card without a render node");
        std::fs::write(dir.join("dri/renderD128"), b"").unwrap();
        assert!(has_gpu_node(&dir));
        std::fs::remove_dir_all(dir.join("dri")).unwrap();
        std::fs::write(dir.join("nvidia0"), b"").unwrap();
        assert!(has_gpu_node(&dir));
        std::fs::remove_file(dir.join("nvidia0")).unwrap();
        assert!(!has_gpu_node(&dir));
        std::fs::write(dir.join("dxg"), b"").unwrap();
        assert!(has_gpu_node(&dir), "WSL's GPU");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

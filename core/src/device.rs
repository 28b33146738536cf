//! Device selection from a user-facing string (`cpu`, `cuda`, `cuda:1`, `metal`).

use crate::{Error, Result};
use candle_core::Device;

/// A parsed `--device` value, before the device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => {
                let i = i.parse::<usize>().map_err(|_| {
                    Error::invalid(format!(
                        "device '{s}': the part after ':' must be a device index, e.g. cuda:0"
                    ))
                })?;
                (n.to_string(), i)
            }
            None => (s.clone(), 0),
        };
        match name.as_str() {
            "cpu" if index == 0 => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(index)),
            "metal" => Ok(DeviceSpec::Metal(index)),
            _ => Err(Error::invalid(format!(
                "unknown device '{s}': use cpu, cuda, cuda:N or metal"
            ))),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

impl DeviceSpec {
    /// Open the device. Fails with a clear message when tessera was built without its feature.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(i) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::invalid(
                        "device cuda: this build has no CUDA support; rebuild with `--features cuda`",
                    ));
                }
                Ok(Device::new_cuda(i)?)
            }
            DeviceSpec::Metal(i) => {
                if !candle_core::utils::metal_is_available() {
                    return Err(Error::invalid(
                        "device metal: this build has no Metal support; rebuild with `--features metal`",
                    ));
                }
                Ok(Device::new_metal(i)?)
            }
        }
    }
}

/// Parse and open a device in one step.
pub fn parse_device(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("metal".parse::<DeviceSpec>().unwrap(), DeviceSpec::Metal(0));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cpu_opens() {
        assert!(parse_device("cpu").unwrap().is_cpu());
    }
}

//! Helpers shared by the integration tests: cached Python environments and
//! `chainlog mock` run as a child process.

pub mod mock_process;
pub mod python_env;

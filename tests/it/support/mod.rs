//! Helpers shared by the integration tests: cached Python environments,
//! `chainlog mock` run as a child process, and a real `mlflow server`.

pub mod azurite;
pub mod mlflow_server;
pub mod mock_process;
pub mod moto_server;
pub mod python_env;
pub mod refusing;
pub mod trace_store;

//! The supervisor: forks workload children, kills them, builds crash states,
//! recovers them in isolated children and asks the oracle. Only the
//! dispatcher ([`run`]) touches signals, the terminal and the report sinks;
//! workers and their children never do.

pub mod child;
pub mod process;
pub mod protocol;
pub mod recovery_fault;
pub mod run;
pub mod steady;
pub mod trial;
pub mod verify;
pub mod worker;
pub mod workload_child;

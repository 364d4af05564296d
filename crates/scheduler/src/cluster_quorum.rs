//! A virtual cluster together with result validation (P1.2 with P6.1): a job checked by
//! replicas is placed replica by replica, so its cluster request becomes a requirement over
//! engines that every quorum member must meet (the node's speed, memory and disk), combined
//! with the job's own requirement. Pure: the coordinator's `job_terms` parses the result like
//! any requirement of the market's language.

use idlegrid_types::VirtualClusterRequest;

/// What an engine must offer to be a node of `cluster`, in the requirement language; `None`
/// when the request names no node figure.
pub fn node_requirement(cluster: &VirtualClusterRequest) -> Option<String> {
    let mut clauses = Vec::new();
    if let Some(gflops) = cluster.node_cpu_gflops.filter(|g| g.is_finite() && *g > 0.0) {
        clauses.push(format!("engine.gflops >= {gflops}"));
    }
    if let Some(memory) = cluster.node_memory_mb.filter(|m| *m > 0) {
        clauses.push(format!("engine.memory_mb >= {memory}"));
    }
    if let Some(disk) = cluster.node_disk_mb.filter(|d| *d > 0) {
        clauses.push(format!("engine.disk_mb >= {disk}"));
    }
    (!clauses.is_empty()).then(|| clauses.join(" and "))
}

/// The job's own requirement and its cluster's node requirement, both holding.
pub fn combined(own: Option<&str>, cluster: Option<&VirtualClusterRequest>) -> Option<String> {
    match (own, cluster.and_then(node_requirement)) {
        (Some(own), Some(node)) => Some(format!("({own}) and ({node})")),
        (Some(own), None) => Some(own.to_string()),
        (None, node) => node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_figures_become_clauses() {
        assert_eq!(node_requirement(&VirtualClusterRequest::default()), None);
        let cluster = VirtualClusterRequest {
            node_cpu_gflops: Some(2.5),
            node_memory_mb: Some(1024),
            node_disk_mb: Some(0),
            reliability: Some(0.9),
            ..Default::default()
        };
        assert_eq!(node_requirement(&cluster).as_deref(), Some("engine.gflops >= 2.5 and engine.memory_mb >= 1024"));
        let only_disk = VirtualClusterRequest { node_disk_mb: Some(10), ..Default::default() };
        assert_eq!(node_requirement(&only_disk).as_deref(), Some("engine.disk_mb >= 10"));
        let no_speed = VirtualClusterRequest { node_cpu_gflops: Some(f64::NAN), ..Default::default() };
        assert_eq!(node_requirement(&no_speed), None);
    }

    #[test]
    fn the_jobs_requirement_and_the_clusters_both_hold() {
        let cluster = VirtualClusterRequest { node_memory_mb: Some(512), ..Default::default() };
        assert_eq!(combined(None, None), None);
        assert_eq!(combined(Some("engine.os == \"linux\""), None).as_deref(), Some("engine.os == \"linux\""));
        assert_eq!(combined(None, Some(&cluster)).as_deref(), Some("engine.memory_mb >= 512"));
        assert_eq!(combined(Some("a or b"), Some(&cluster)).as_deref(), Some("(a or b) and (engine.memory_mb >= 512)"));
        assert_eq!(combined(Some("x"), Some(&VirtualClusterRequest::default())).as_deref(), Some("x"));
    }

    #[test]
    fn every_requirement_built_parses() {
        let cluster = VirtualClusterRequest {
            node_cpu_gflops: Some(1e12),
            node_memory_mb: Some(1 << 30),
            node_disk_mb: Some(7),
            ..Default::default()
        };
        let source = combined(Some("engine.os == \"linux\""), Some(&cluster)).unwrap();
        crate::terms::parse_job_expression(&source).unwrap();
    }
}

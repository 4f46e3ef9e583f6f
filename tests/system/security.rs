//! Executors run only what their scheduler sends: without the cluster credential, nothing.

use arrow_flight::Ticket;
use arrow_flight::flight_service_client::FlightServiceClient;
use glaux_proto::generated::executor_control_client::ExecutorControlClient;
use glaux_proto::generated::scheduler_cluster_client::SchedulerClusterClient;
use glaux_proto::generated::{
    ExecutorRegistration, LaunchTasksRequest, RegisterExecutorRequest, TaskDefinition, TaskOutputTicket,
};
use glaux_proto::{ClusterAuth, ClusterSecret};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executors_and_scheduler_reject_callers_without_the_cluster_secret() -> TestResult {
    let cluster = TestCluster::builder().executors(1).start().await?;
    let executor = format!("http://{}", cluster.executors[0].endpoint());
    let channel = Channel::from_shared(executor)?.connect().await?;
    let launch = LaunchTasksRequest {
        tasks: vec![TaskDefinition {
            query_id: "q".into(),
            stage_id: 1,
            task_id: 0,
            partitions: vec![0],
            plan: b"not even a plan".to_vec(),
            scan_codecs: vec![],
            reads_per_partition: 1,
            plan_partitions: vec![],
            dynamic_filters: false,
            analyze: false,
        }],
    };

    // No credential.
    let status = ExecutorControlClient::new(channel.clone()).launch_tasks(launch.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    let ticket = TaskOutputTicket { query_id: "q".into(), stage_id: 1, task_id: 0, partition: 0, compress: false };
    let status = FlightServiceClient::new(channel.clone())
        .do_get(Ticket { ticket: ticket.encode_to_vec().into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");

    // A wrong credential.
    let wrong = ClusterAuth::attach(ClusterSecret::generate());
    let status = ExecutorControlClient::with_interceptor(channel.clone(), wrong.clone())
        .launch_tasks(launch.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");

    // The right one gets through to plan decoding, which refuses garbage without harm.
    let right = ClusterAuth::attach(cluster.secret.clone());
    let status = ExecutorControlClient::with_interceptor(channel.clone(), right)
        .launch_tasks(launch)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    // Nobody joins the cluster without the secret either.
    let scheduler = Channel::from_shared(format!("http://{}", cluster.url()))?.connect().await?;
    let registration = RegisterExecutorRequest {
        executor: Some(ExecutorRegistration {
            executor_id: "rogue".into(),
            endpoint: "127.0.0.1:1".into(),
            task_slots: 8,
            memory_limit_bytes: 0,
        }),
    };
    let status = SchedulerClusterClient::with_interceptor(scheduler, wrong)
        .register_executor(registration)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    assert_eq!(cluster.scheduler.cluster().alive().len(), 1);

    // And the cluster still answers queries.
    let mut client = cluster.client().await;
    assert_eq!(rows_of(&client.query("SELECT 40 + 2").await?.batches), vec!["42"]);
    Ok(())
}

//! Partition pruning happens before files are assigned; row-group pruning happens in the executors'
//! Parquet readers. Both are read off the statistics the query reports.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_and_row_groups_are_pruned() -> TestResult {
    let cluster = TestCluster::builder().start().await?;
    let (lake, mut client) = cluster.with_lake().await?;
    let reference = reference_context(&lake).await;
    let all_files = (REGIONS.len() * DAYS.len() * FILES_PER_PARTITION) as u64;

    let full =
        assert_same_as_datafusion(&mut client, &reference, "SELECT sum(qty), round(sum(amount), 4) FROM sales").await;
    let full = full.stats.expect("stats");
    assert_eq!(full.files_planned, all_files);

    // Partition pruning: one region and one day of 3 x 3 partitions.
    let one = assert_same_as_datafusion(
        &mut client,
        &reference,
        "SELECT sum(qty), round(sum(amount), 4) FROM sales WHERE region = 'eu' AND day = '2024-01-02'",
    )
    .await;
    let one = one.stats.expect("stats");
    assert_eq!(one.files_planned, FILES_PER_PARTITION as u64, "only the chosen partition's files are planned");
    assert!(one.bytes_planned * 5 < full.bytes_planned, "{one:?} vs {full:?}");
    assert!(one.scan.bytes_scanned * 5 < full.scan.bytes_scanned, "{one:?} vs {full:?}");

    // Row-group pruning: ids are sorted within files, 100 per row group, so a narrow id range
    // touches one row group of one file; the executors skip the others by their statistics.
    let narrow = assert_same_as_datafusion(
        &mut client,
        &reference,
        "SELECT sum(qty), round(sum(amount), 4) FROM sales WHERE region = 'us' AND id BETWEEN 6110 AND 6120",
    )
    .await;
    let narrow = narrow.stats.expect("stats");
    assert!(narrow.scan.row_groups_pruned > 0, "{narrow:?}");
    assert!(narrow.scan.row_groups_matched <= 1, "{narrow:?}");
    assert!(narrow.scan.bytes_scanned * 10 < full.scan.bytes_scanned, "{narrow:?} vs {full:?}");
    // Within the row group, the page index skips the pages outside the range.
    assert!(narrow.scan.page_rows_pruned > 0, "{narrow:?}");

    // Late materialization: a filter on an unsorted column prunes nothing by statistics but is
    // evaluated inside the Parquet decoder, before the other columns are decoded.
    let late = assert_same_as_datafusion(
        &mut client,
        &reference,
        "SELECT count(*), round(sum(amount), 4) FROM sales WHERE qty = 7",
    )
    .await;
    let late = late.stats.expect("stats");
    assert!(late.scan.pushdown_rows_pruned > 0, "{late:?}");
    Ok(())
}

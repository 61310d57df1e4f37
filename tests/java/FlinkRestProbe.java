// Reads a Sluice cluster's REST answers with Flink 2.3's own REST client (RestClusterClient and
// the response classes it deserializes into, with Flink's strict JSON mapper), for the job-detail
// calls the `flink` CLI has no verb for. Compiled and run by tests/tests/flink_cli.rs against the
// jars of PyPI's apache-flink.
//   java FlinkRestProbe <host> <port> <jobid>

import org.apache.flink.api.common.JobID;
import org.apache.flink.client.deployment.StandaloneClusterId;
import org.apache.flink.client.program.rest.RestClusterClient;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.runtime.client.JobStatusMessage;
import org.apache.flink.runtime.rest.messages.job.JobDetailsInfo;

public class FlinkRestProbe {
    public static void main(String[] args) throws Exception {
        Configuration config = new Configuration();
        config.set(RestOptions.ADDRESS, args[0]);
        config.set(RestOptions.PORT, Integer.parseInt(args[1]));
        config.set(RestOptions.RETRY_MAX_ATTEMPTS, 0);
        JobID id = JobID.fromHexString(args[2]);
        try (RestClusterClient<StandaloneClusterId> client =
                new RestClusterClient<>(config, StandaloneClusterId.getInstance())) {
            for (JobStatusMessage job : client.listJobs().get()) {
                System.out.println("listed " + job.getJobId() + " " + job.getJobName() + " " + job.getJobState());
            }
            JobDetailsInfo details = client.getJobDetails(id).get();
            System.out.println("details " + details.getJobId() + " " + details.getName() + " "
                    + details.getJobStatus() + " maxParallelism=" + details.getMaxParallelism()
                    + " vertices=" + details.getJobVertexInfos().size()
                    + " plan-nodes=" + details.getPlan().getNodes().size());
            for (JobDetailsInfo.JobVertexDetailsInfo v : details.getJobVertexInfos()) {
                System.out.println("vertex " + v.getJobVertexID() + " " + v.getName() + " parallelism="
                        + v.getParallelism() + " " + v.getExecutionState());
            }
            System.out.println("status " + client.getJobStatus(id).get());
        }
    }
}

// Reads REST answers of a Sluice cluster the way Flink 2.3's RestClient does: for each
// endpoint, the response type its Flink MessageHeaders declare (class and type parameters),
// deserialized with the mapper RestClient.parseResponse uses (Flink's flexible REST mapper:
// unknown fields are allowed, missing or null required ones are not). Compiled and run by
// tests/tests/rest_shapes.rs against the jars of PyPI's apache-flink.
//   java FlinkRestShapes <base-url> <path>=<HeadersClass> [<METHOD path body>=<HeadersClass>]...
// A key may start with "POST " and carry a JSON body after the path (one space between).
// Prints "ok <path> <HeadersClass>" per answer that parses, "FAILED …" with the body per one
// that does not, and exits 1 when any failed.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Collection;

import org.apache.flink.runtime.rest.messages.MessageHeaders;
import org.apache.flink.runtime.rest.util.RestMapperUtils;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JavaType;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

public class FlinkRestShapes {
    /** The headers' singleton: {@code getInstance()}, else the {@code INSTANCE} field. */
    static MessageHeaders<?, ?, ?> headers(String name) throws Exception {
        Class<?> c = Class.forName(name);
        try {
            return (MessageHeaders<?, ?, ?>) c.getMethod("getInstance").invoke(null);
        } catch (NoSuchMethodException e) {
            return (MessageHeaders<?, ?, ?>) c.getField("INSTANCE").get(null);
        }
    }

    public static void main(String[] args) throws Exception {
        String base = args[0];
        ObjectMapper mapper = RestMapperUtils.getFlexibleObjectMapper();
        HttpClient http = HttpClient.newHttpClient();
        int failed = 0;
        for (int i = 1; i < args.length; i++) {
            int eq = args[i].lastIndexOf('=');
            String request = args[i].substring(0, eq);
            String headersClass = args[i].substring(eq + 1);
            MessageHeaders<?, ?, ?> headers = headers(headersClass);
            HttpRequest.Builder builder;
            String path;
            if (request.startsWith("POST ")) {
                String rest = request.substring(5);
                int space = rest.indexOf(' ');
                path = space < 0 ? rest : rest.substring(0, space);
                String body = space < 0 ? "{}" : rest.substring(space + 1);
                builder = HttpRequest.newBuilder(URI.create(base + path))
                        .header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString(body));
            } else {
                path = request;
                builder = HttpRequest.newBuilder(URI.create(base + path)).GET();
            }
            HttpResponse<String> response = http.send(builder.build(), HttpResponse.BodyHandlers.ofString());
            Collection<Class<?>> params = headers.getResponseTypeParameters();
            JavaType type = params.isEmpty()
                    ? mapper.constructType(headers.getResponseClass())
                    : mapper.getTypeFactory().constructParametricType(
                            headers.getResponseClass(), params.toArray(new Class<?>[0]));
            try {
                if (response.statusCode() != headers.getResponseStatusCode().code()) {
                    throw new IllegalStateException("status " + response.statusCode() + ", Flink answers "
                            + headers.getResponseStatusCode().code());
                }
                Object parsed = mapper.readValue(response.body(), type);
                System.out.println("ok " + path + " " + headers.getClass().getSimpleName() + " "
                        + parsed.getClass().getSimpleName());
            } catch (Exception e) {
                System.out.println("FAILED " + path + " as " + headersClass + ": " + e);
                System.out.println("body: " + response.body());
                failed++;
            }
        }
        if (failed > 0) {
            System.exit(1);
        }
    }
}

import java.net.URL;
import java.util.UUID;
import javax.xml.namespace.QName;
import org.apache.axis.client.Stub;
import org.apache.axis.message.MessageElement;
import org.apache.axis.message.SOAPHeaderElement;
import org.apache.axis.message.Text;
import org.apache.axis.types.URI;
import org.globus.www._2008._06.workspace.FactoryRPSet;
import org.globus.www._2008._06.workspace.ServiceRPSet;
import org.globus.www._2008._06.workspace.WorkspaceFactoryServiceLocator;
import org.globus.www._2008._06.workspace.WorkspaceServiceLocator;
import org.oasis_open.docs.wsrf._2004._06.wsrf_WS_ResourceProperties_1_2_draft_01_xsd.QueryExpressionType;
import org.oasis_open.docs.wsrf._2004._06.wsrf_WS_ResourceProperties_1_2_draft_01_xsd.QueryResourceProperties;
import org.oasis_open.docs.wsrf._2004._06.wsrf_WS_ResourceProperties_1_2_draft_01_xsd.QueryResourcePropertiesResponse;

/**
 * What the stock Nimbus client's --rpquery (RPQueryInstance) and --factoryrp (RPQueryFactory) do,
 * with Axis 1.4 stubs: QueryResourceProperties "/", then the first element of the answer read as
 * the resource-property document's bean. Prints what it read; an exception means a stock client fails.
 *
 *   StockRPQuery workspace ADDRESS WORKSPACE_KEY   prints the state and the number of topics
 *   StockRPQuery factory ADDRESS                   prints the default running time and the associations
 */
public class StockRPQuery {
    static final String WSA = "http://schemas.xmlsoap.org/ws/2004/03/addressing";
    static final String WORKSPACE = "http://www.globus.org/2008/06/workspace";
    static final String QUERY_ACTION = "http://docs.oasis-open.org/wsrf/2004/06/wsrf-WS-ResourceProperties/QueryResourceProperties";

    public static void main(String[] args) throws Exception {
        URL address = new URL(args[1]);
        if (args[0].equals("workspace")) {
            Object port = new WorkspaceServiceLocator().getWorkspacePortTypePort(address);
            address((Stub) port, args[1]).setHeader(new SOAPHeaderElement(WORKSPACE, "WorkspaceKey", args[2]));
            QueryResourcePropertiesResponse answer =
                ((org.globus.www._2008._06.workspace.WorkspacePortType) port).queryResourceProperties(slash());
            ServiceRPSet document = (ServiceRPSet) first(answer).getValueAsType(
                new QName(WORKSPACE, "ServiceRPSet"), ServiceRPSet.class);
            System.out.println(document.getCurrentState().getState() + " " + document.getTopic().length);
        } else {
            Object port = new WorkspaceFactoryServiceLocator().getWorkspaceFactoryPortTypePort(address);
            address((Stub) port, args[1]);
            QueryResourcePropertiesResponse answer =
                ((org.globus.www._2008._06.workspace.WorkspaceFactoryPortType) port).queryResourceProperties(slash());
            FactoryRPSet document = (FactoryRPSet) first(answer).getValueAsType(
                new QName(WORKSPACE, "FactoryRPSet"), FactoryRPSet.class);
            System.out.println(document.getDefaultRunningTime() + " " + String.join(",", document.getAssociations()));
        }
    }

    /** The WS-Addressing 2004/03 headers a GT4 client sends. */
    static Stub address(Stub stub, String to) {
        stub.setHeader(new SOAPHeaderElement(WSA, "To", to));
        stub.setHeader(new SOAPHeaderElement(WSA, "Action", QUERY_ACTION));
        stub.setHeader(new SOAPHeaderElement(WSA, "MessageID", "uuid:" + UUID.randomUUID()));
        return stub;
    }

    static QueryResourceProperties slash() throws Exception {
        QueryExpressionType expression = new QueryExpressionType();
        expression.setDialect(new URI("http://www.w3.org/TR/1999/REC-xpath-19991116"));
        expression.set_any(new MessageElement[] {new MessageElement(new Text("/"))});
        return new QueryResourceProperties(expression);
    }

    static MessageElement first(QueryResourcePropertiesResponse answer) {
        if (answer.get_any() == null || answer.get_any().length == 0) {
            throw new IllegalStateException("the answer to / is empty");
        }
        return answer.get_any()[0];
    }
}

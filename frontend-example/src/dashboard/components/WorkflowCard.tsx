import { useSubscription } from 'urql';
import { graphql } from '../../gql';
import type { WorkflowFieldsFragment } from '../../gql/graphql';
import { isAtLeastAsRecent } from '../live';
import { ProgressBar } from './ProgressBar';
import { StatusPill } from './StatusPill';

const WorkflowProgressSubscription = graphql(`
  subscription WorkflowProgress($workflowId: ID!) {
    workflowProgress(workflowId: $workflowId) {
      workflow {
        ...WorkflowFields
      }
      event {
        id
        type
      }
    }
  }
`);

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/** One workflow, live until it ends (the server completes the subscription then). */
export function WorkflowCard({ initial }: { initial: WorkflowFieldsFragment }) {
  const [{ data }] = useSubscription({
    query: WorkflowProgressSubscription,
    variables: { workflowId: initial.id },
    pause: TERMINAL.has(initial.status),
  });
  const live = data?.workflowProgress.workflow;
  const workflow = live && isAtLeastAsRecent(live.updatedAt, initial.updatedAt) ? live : initial;
  const lastEvent = data?.workflowProgress.event;

  return (
    <li className="row workflow" data-workflow-id={workflow.id} data-status={workflow.status}>
      <div className="row-head">
        <span className="title">{workflow.name}</span>
        <StatusPill status={workflow.status} />
      </div>
      <ProgressBar value={workflow.progress} label={`progress of ${workflow.name}`} />
      <ol className="steps">
        {workflow.steps.map((step) => (
          <li
            key={step.index}
            className={`step status-${step.status.toLowerCase()}${step.index === workflow.currentStep ? ' current' : ''}`}
            title={step.capability ? `needs ${step.capability}` : undefined}
          >
            <span className="step-name">{step.name}</span>
            <StatusPill status={step.status} />
            {step.status === 'RUNNING' && step.task && (
              <span className="step-progress">{Math.round(step.task.progress * 100)}%</span>
            )}
          </li>
        ))}
      </ol>
      {lastEvent && (
        <div className="row-meta">
          <span>
            last: #{lastEvent.id} {lastEvent.type}
          </span>
        </div>
      )}
    </li>
  );
}

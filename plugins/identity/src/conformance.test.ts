import { describeGrowthOperator } from '@sprout/testkit'
import identity from './index.js'

describeGrowthOperator(identity)

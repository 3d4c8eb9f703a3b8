import { describeGrowthOperator } from '@sprout/testkit'
import lemon from './index.js'

describeGrowthOperator(lemon)
